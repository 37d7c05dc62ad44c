"""SynSpirit: a self-hosted knowledge community."""
from __future__ import annotations


def create_app(config: dict | None = None):
    # Imports live here so that importing the package is free: celery_utils and run.py must be
    # able to patch the standard library with gevent before Flask and its friends are loaded.
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from .config import load_config

    # No app-wide static folder: the web page's files are the `web` blueprint's (app/web/).
    app = Flask(__name__, static_folder=None)

    # Configuration: the environment, then explicit overrides (tests).
    app.config.update(load_config())
    app.config.update(config or {})

    # Extensions.
    from .extensions import db, limiter, migrate, socketio

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.root_path + "/migrations"))
    limiter.init_app(app)
    from .realtime.limits import BoundedPacket, OversizedPollGuard
    from .realtime.queue import message_queue

    socketio_buffer = 64 * 1024
    socketio.init_app(
        app,
        client_manager=message_queue(app.config["REDIS_URL"]),
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
    from .content.pages import FRONT_TTL

    # The lists' first pages, kept ready (content/pages.py).
    app.extensions["synspirit_front_pages"] = ItemCache(maxsize=16, ttl=FRONT_TTL)

    from .celery_config import celery_init_app

    celery_init_app(app)

    # Blueprints: one per feature (content: one per kind), each defined at the top of the
    # module holding its routes, every route declared by a decorator on its view function.
    from . import (
        actions,
        auth,
        content,
        metrics,
        moderation,
        notifications,
        openapi,
        ops,
        reports,
        search,  # noqa: F401  (its tables and the hooks that keep them)
        users,
        web,
    )
    from .content.search import bp as search_bp
    from .realtime import events  # noqa: F401  (registers the Socket.IO handlers)

    for bp in (ops.bp, auth.bp, content.posts, content.articles, actions.bp, search_bp,
               notifications.bp, reports.bp, moderation.bp, users.bp, openapi.bp, metrics.bp,
               web.bp):
        app.register_blueprint(bp)

    # Operators' commands (`flask --app app ...`, docs/operations.md).
    from .search_cli import search as search_cli
    from .users.cli import users as users_cli

    for command in (users_cli, search_cli):
        app.cli.add_command(command)

    # Error handlers.
    from .errors import register_error_handlers

    register_error_handlers(app)

    app.wsgi_app = OversizedPollGuard(app.wsgi_app, socketio_buffer, socketio.server.eio)

    # Behind nginx: the client address, scheme and host from exactly the configured number of
    # proxies; nginx sets these three headers itself (tests/backend/web/test_proxy_headers.py).
    hops = app.config["TRUSTED_PROXY_COUNT"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app
