"""The gunicorn worker of the web instances: geventwebsocket's, closing kept-alive connections
once a graceful stop has begun.

gunicorn's gevent worker stops accepting on SIGTERM but goes on serving every request that
arrives on an already open keep-alive connection, then kills those connections when
--graceful-timeout runs out (websockets keep it waiting that long). nginx keeps connections to
its upstreams alive (`keepalive 32`) and does not know the instance is stopping, so it kept
sending requests on them until the kill cut one in flight: a POST cut that way is not retried
(not idempotent) and the client got 502 (make chaos, power-off of a web host). Here every
response sent after the stop began says `Connection: close` and the connection is closed after
it, so nginx stops reusing the instance's connections within a request each and opens new
ones elsewhere (the listening socket is closed: refused, tried on the next instance).

Every web instance runs it (gunicorn_config.py: worker_class).
"""
from __future__ import annotations

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler


class Handler(WebSocketHandler):
    def start_response(self, status, headers, exc_info=None):
        # `closed`: the listening socket is closed, i.e. the worker is stopping. A websocket
        # handshake (101) keeps its Connection: Upgrade.
        if self.server.closed and not status.startswith("101"):
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            headers.append(("Connection", "close"))
        return super().start_response(status, headers, exc_info)


class Worker(GeventWebSocketWorker):
    wsgi_handler = Handler
