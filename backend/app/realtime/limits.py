"""Limits on what a Socket.IO client may send, beyond python-socketio's own."""
from __future__ import annotations

import json
from urllib.parse import parse_qs

from socketio.packet import Packet

MAX_ATTACHMENTS = 10  # our events carry none; a few allow for clients that send binary


class BoundedPacket(Packet):
    """python-socketio accepts up to 10 digits of announced binary attachments and buffers every
    following frame until they arrive: a client could make the worker's memory grow without
    end. Refuse packets that announce more than MAX_ATTACHMENTS."""

    def decode(self, encoded_packet):
        count = super().decode(encoded_packet)
        if count > MAX_ATTACHMENTS:
            raise ValueError("too many binary attachments")
        return count


class OversizedPollGuard:
    """WSGI middleware: answer a long-polling POST larger than the Socket.IO buffer with 413
    before engine.io reads it. (python-engineio closes such a session by waiting for a GET that
    may never come, holding the request open.)"""

    def __init__(self, wsgi_app, max_bytes: int, eio_server, path: str = "/socket.io"):
        self.wsgi_app, self.max_bytes, self.eio, self.path = wsgi_app, max_bytes, eio_server, path

    def _end_session(self, environ) -> None:
        # The session ends, as engine.io would end it, but without waiting for a GET to drain
        # its queue (a pending GET, if any, receives the close packet).
        sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
        sock = self.eio.sockets.pop(sid, None) if sid else None
        if sock is not None:
            sock.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").startswith(
                self.path):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > self.max_bytes:
                self._end_session(environ)
                body = json.dumps({"error": {"code": "payload_too_large",
                                             "message": "Socket.IO message too large"}}).encode()
                start_response("413 Request Entity Too Large",
                               [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body))), ("Connection", "close")])
                return [body]
        return self.wsgi_app(environ, start_response)
