"""Extensions, created unbound here and bound to the app in create_app()."""
import redis
from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from redis.backoff import ConstantBackoff
from redis.retry import Retry
from sqlalchemy import MetaData

from .redis_connect import connect

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
        # One retry after 0.5 s (a stale pooled connection after a Redis restart, a blip), not
        # redis-py's default of 3 with 1-10 s backoff: with the network to Redis cut that default
        # held a request ~20 s on one command (3 s timeout per try plus the backoff), past
        # clients' and nginx's patience (make chaos, network cut). Now at most ~6.5 s, then the
        # caller's fallback (view not counted, recount left to reconcile_counts, or 503).
        client = connect(current_app.config["REDIS_URL"], socket_timeout=3,
                         socket_connect_timeout=3, health_check_interval=30,
                         retry=Retry(ConstantBackoff(0.5), 1))
        current_app.extensions["synspirit_redis"] = client
    return client
