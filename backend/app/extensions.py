"""Extensions, created unbound here and bound to the app in create_app()."""
import redis
from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

from .redis_connect import connect, web_options

# Explicit constraint names keep Alembic migrations stable.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
socketio = SocketIO()
limiter = Limiter(key_func=get_remote_address)


def redis_client() -> redis.Redis:
    """The app's shared Redis connection pool (view buffer, readiness)."""
    client = current_app.extensions.get("synspirit_redis")
    if client is None:
        client = connect(current_app.config["REDIS_URL"], **web_options())
        current_app.extensions["synspirit_redis"] = client
    return client
