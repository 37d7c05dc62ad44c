"""Operators' commands: `flask --app app users set-role NAME ROLE`, `flask --app app users
list-staff` (docs/operations.md, "Roles")."""
import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func

from ..extensions import db
from ..models import ROLES, User, named
from ..roles import role_of

users = AppGroup("users", help="Accounts' roles.")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def set_role(username: str, role: str) -> None:
    """Store ROLE for USERNAME (SYNSPIRIT_ADMINS still makes its names admins)."""
    user = named(username)
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    user.role = role
    db.session.commit()
    click.echo(f"{user.username}: {role_of(user)}")


@users.command("list-staff")
def list_staff() -> None:
    """Every moderator and admin, stored or named by SYNSPIRIT_ADMINS, one per line."""
    admins = sorted(current_app.config["ADMINS"])
    staff = db.session.scalars(db.select(User).where(
        (User.role != "user") | func.lower(User.username).in_(admins))
        .order_by(func.lower(User.username))).all()
    for user in staff:
        click.echo(f"{user.username}\t{role_of(user)}")
    for name in sorted(set(admins) - {user.username.lower() for user in staff}):
        click.echo(f"{name}\tadmin (SYNSPIRIT_ADMINS; no such account yet)")
