"""Roles: who is a user, a moderator or an admin (GET /api/me), how admins are made
(SYNSPIRIT_ADMINS, the operators' CLI) and how admins name moderators (PUT /api/users/NAME/role).

The suite's processes run with SYNSPIRIT_ADMINS=" Site_Admin ,nobody_yet" (conftest.stack_env);
the site_admin fixture registers site_admin."""
import uuid

from testkit.processes import flask


def me(api, token) -> dict:
    resp = api.get("/api/me", token=token)
    assert resp.status_code == 200, resp.text
    return resp.json()


def set_role(api, token, username, role):
    return api.call("PUT", f"/api/users/{username}/role", token=token, json={"role": role})


def test_a_new_account_is_a_user(api, register_user):
    user, token = register_user()
    assert user["role"] == "user"
    assert me(api, token)["role"] == "user"


def test_an_admin_names_a_moderator_and_takes_it_back(api, register_user, site_admin):
    user, token = register_user()
    resp = set_role(api, site_admin, user["username"].upper(), "moderator")  # any case of the name
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": user["id"], "username": user["username"], "role": "moderator"}
    assert me(api, token)["role"] == "moderator"  # the same token, the new role

    assert set_role(api, site_admin, user["username"], "user").status_code == 200
    assert me(api, token)["role"] == "user"


def test_only_admins_change_roles(api, register_user, site_admin):
    target, target_token = register_user()
    _, user_token = register_user()
    moderator, moderator_token = register_user()
    assert set_role(api, site_admin, moderator["username"], "moderator").status_code == 200

    for token in (user_token, moderator_token, target_token):
        resp = set_role(api, token, target["username"], "moderator")
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["code"] == "forbidden"
    assert set_role(api, None, target["username"], "moderator").status_code == 401
    assert me(api, target_token)["role"] == "user"


def test_bad_role_changes_are_refused(api, register_user, site_admin):
    user, token = register_user()
    resp = set_role(api, site_admin, f"nobody{uuid.uuid4().hex[:8]}", "moderator")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    for body in ({"role": "admin"}, {"role": "root"}, {}, {"role": 1}):
        resp = api.call("PUT", f"/api/users/{user['username']}/role", token=site_admin, json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert "role" in resp.json()["error"]["fields"]
    # An admin's role is the operators' business: no admin token demotes an admin.
    resp = set_role(api, site_admin, "site_admin", "user")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "is_admin"
    assert me(api, token)["role"] == "user"
    assert me(api, site_admin)["role"] == "admin"


def test_operators_make_admins_with_the_cli(api, stack_env, register_user, site_admin):
    user, token = register_user()
    done = flask(stack_env, "users", "set-role", user["username"], "admin")
    assert done.returncode == 0, done.stderr
    assert me(api, token)["role"] == "admin"
    # ...who may then name moderators,
    other, other_token = register_user()
    assert set_role(api, token, other["username"], "moderator").status_code == 200

    staff = dict(line.split("\t", 1) for line in
                 flask(stack_env, "users", "list-staff").stdout.splitlines())
    assert staff[user["username"]] == "admin"
    assert staff[other["username"]] == "moderator"
    assert staff["site_admin"] == "admin"
    assert staff["nobody_yet"].startswith("admin (SYNSPIRIT_ADMINS; no such account")

    assert flask(stack_env, "users", "set-role", user["username"], "user").returncode == 0
    assert me(api, token)["role"] == "user"
    missing = flask(stack_env, "users", "set-role", f"nobody{uuid.uuid4().hex[:8]}", "admin")
    assert missing.returncode != 0 and "no user named" in missing.stderr
    assert flask(stack_env, "users", "set-role", user["username"], "root").returncode != 0


def test_an_admin_by_name_stays_one_whatever_is_stored(api, stack_env, site_admin):
    assert flask(stack_env, "users", "set-role", "site_admin", "user").returncode == 0
    assert me(api, site_admin)["role"] == "admin"
