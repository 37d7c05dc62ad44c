"""SynSpirit: a self-hosted knowledge community."""
from __future__ import annotations


def create_app(config: dict | None = None):
    # Imports live here so that importing the package is free: celery_utils and run.py must be
    # able to patch the standard library with gevent before Flask and its friends are loaded.
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from .config import load_config

    app = Flask(__name__)

    # Configuration: the environment, then explicit overrides (tests).
    app.config.update(load_config())
    app.config.update(config or {})

    # Extensions.
    from .extensions import db, limiter, migrate, socketio

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.root_path + "/migrations"))
    limiter.init_app(app)
    from .realtime.limits import BoundedPacket, OversizedPollGuard

    socketio_buffer = 64 * 1024
    socketio.init_app(
        app,
        message_queue=app.config["REDIS_URL"],
        channel="synspirit-socketio",
        cors_allowed_origins=app.config["SOCKETIO_CORS_ORIGINS"],
        async_mode="gevent",
        # Malformed or oversized packets close the connection instead of growing memory.
        max_http_buffer_size=socketio_buffer,
        serializer=BoundedPacket,
        ping_interval=25,
        ping_timeout=20,
    )

    from .item_cache import ItemCache

    app.extensions["synspirit_item_cache"] = ItemCache(
        maxsize=app.config["ITEM_CACHE_SIZE"], ttl=app.config["ITEM_CACHE_TTL"])

    from .celery_setup import celery_init_app

    celery_init_app(app)

    # Blueprints.
    from . import actions, auth, ops
    from .content import make_blueprint
    from .metrics import init_metrics

    app.register_blueprint(ops.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(make_blueprint("post"))
    app.register_blueprint(make_blueprint("article"))
    app.register_blueprint(actions.bp)
    from .openapi import bp as openapi_bp

    app.register_blueprint(openapi_bp)
    init_metrics(app)
    # Error handlers.
    from .errors import register_error_handlers
    from .realtime import events  # noqa: F401  (registers the Socket.IO handlers)

    register_error_handlers(app)

    app.wsgi_app = OversizedPollGuard(app.wsgi_app, socketio_buffer, socketio.server.eio)

    # Behind nginx: trust exactly the configured number of proxies for client address/scheme.
    hops = app.config["TRUSTED_PROXY_COUNT"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app
