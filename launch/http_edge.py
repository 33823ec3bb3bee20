"""The HTTP edge: what happens to a connection before the API sees a request (docs/api.md,
"Limits"; docs/architecture.md, "The HTTP edge").

Whoever takes HTTP runs uvicorn, so the API cannot see a request that never finishes its
headers, nor answer bytes that are no HTTP. The ingress's own front (app/http_front.py) applies
this module itself; Serve calls :func:`proxy_middlewares` in each of its proxy processes when
it starts (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` in config/serve.env). Either way the
outermost middleware is :class:`EdgeGuard`, and uvicorn's HTTP parsing is bounded, once:

- **Slow headers**: a connection whose request headers are not complete within
  ``HEADERS_TIMEOUT_S`` of its first byte (or of the connection itself) gets a 408 in the
  error envelope and is closed: a client that never finishes its headers holds nothing.
- **Malformed HTTP** is answered with a 400 in the envelope, not uvicorn's plain text.
- **Request ids**: a client's ``x-request-id`` that is not short and printable is removed
  before the front reads it, so a fresh id is minted instead of echoing it into responses
  and logs.
- **Open requests per client**: a credential (the ``Authorization`` header) may have at most
  ``MAX_UNREAD_BODIES_PER_CLIENT`` requests whose bodies are being read but have not all
  arrived, at once, in one process that takes HTTP; beyond, a 429. The ingress cuts each
  slow body after its own time limit; this bounds how many one client can hold open
  meanwhile.

Pinned: uvicorn (its httptools and h11 protocols); tests/launch/test_http_edge.py holds
what is patched.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.middleware.request_id import REQUEST_ID_HEADER, incoming_request_id

HEADERS_TIMEOUT_S = float(os.environ.get("INFERENCE_HEADERS_TIMEOUT_S", "10"))
MAX_UNREAD_BODIES_PER_CLIENT = int(os.environ.get("INFERENCE_MAX_UNREAD_BODIES_PER_CLIENT",
                                                  "64"))


def proxy_middlewares() -> list[Middleware]:
    """Serve's proxy callback: the edge's middleware, and uvicorn's parsing bounded."""
    bound_http_parsing()
    return [Middleware(EdgeGuard, max_unread_bodies=MAX_UNREAD_BODIES_PER_CLIENT)]


def envelope(status: int, message: str, kind: str, code: str | None = None) -> bytes:
    """A raw HTTP/1.1 response with the error envelope; the connection closes after it."""
    body = json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()
    reason = {400: b"Bad Request", 408: b"Request Timeout"}[status]
    return b"".join([
        b"HTTP/1.1 %d " % status, reason, b"\r\n",
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n", body])


MALFORMED = envelope(400, "The request is not valid HTTP/1.1.", "invalid_request_error",
                     "invalid_http")
HEADERS_TOO_SLOW = envelope(
    408, f"The request's headers did not arrive within {HEADERS_TIMEOUT_S:g} seconds.",
    "invalid_request_error", "headers_timeout")


def bound_http_parsing() -> None:
    """uvicorn's HTTP/1.1 protocols (httptools, h11) with the header time limit and the
    malformed-request answer above. Idempotent."""
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for protocol in (HttpToolsProtocol, H11Protocol):
        if getattr(protocol, "bounded_by_the_edge", False):
            continue
        _bound(protocol)
        setattr(protocol, "bounded_by_the_edge", True)  # noqa: B010 - a mark on a class not ours


def _bound(protocol: Any) -> None:
    connection_made = protocol.connection_made
    connection_lost = protocol.connection_lost
    data_received = protocol.data_received

    def arm(self: Any) -> None:
        """Headers are due within the limit, from now (a connection made, or the first byte
        of a request on a kept-alive connection)."""
        disarm(self)
        self.headers_due = self.loop.call_later(HEADERS_TIMEOUT_S, headers_too_slow, self)

    def disarm(self: Any) -> None:
        due = getattr(self, "headers_due", None)
        if due is not None:
            due.cancel()
            self.headers_due = None

    def headers_too_slow(self: Any) -> None:
        self.headers_due = None
        if not self.transport.is_closing():
            self.transport.write(HEADERS_TOO_SLOW)
            self.transport.close()

    def on_connection_made(self: Any, transport: Any) -> None:
        connection_made(self, transport)
        arm(self)

    def on_connection_lost(self: Any, exc: Exception | None) -> None:
        disarm(self)
        connection_lost(self, exc)

    def on_data_received(self: Any, data: bytes) -> None:
        # A request's first bytes on a connection that is between requests start its clock;
        # the headers being complete (the ASGI cycle made) stops it.
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and getattr(self, "headers_due", None) is None:
            arm(self)
        data_received(self, data)
        if self.cycle is not None and not self.cycle.response_complete and \
                self.scope.get("method"):
            disarm(self)

    def send_400_response(self: Any, msg: str) -> None:
        disarm(self)
        self.transport.write(MALFORMED)
        self.transport.close()

    protocol.connection_made = on_connection_made
    protocol.connection_lost = on_connection_lost
    protocol.data_received = on_data_received
    protocol.send_400_response = send_400_response


class EdgeGuard:
    """The outermost middleware where HTTP is taken: request ids that are safe to repeat, and a
    bound on the requests one client has still sending their bodies."""

    def __init__(self, app: ASGIApp, max_unread_bodies: int) -> None:
        self.app = app
        self.max_unread_bodies = max_unread_bodies
        self.unread = Counter[str]()  # per client: requests whose body has not all arrived

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        _keep_safe_request_id(scope)
        client = _client(scope)
        if self.unread[client] >= self.max_unread_bodies:
            await _too_many_open(send, self.max_unread_bodies)
            return
        # Counted from the ingress's first read of the body until its last part arrives: a
        # request waiting for a replica has not begun to be read and does not count, and a
        # body that is all there when read counts for no time at all.
        state = "unread"  # then "reading", then "read"

        def reading() -> None:
            nonlocal state
            if state == "unread":
                state = "reading"
                self.unread[client] += 1

        def read() -> None:
            nonlocal state
            if state == "reading":
                self.unread[client] -= 1
                if not self.unread[client]:
                    del self.unread[client]
            state = "read"

        async def counted_receive() -> Message:
            reading()
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                read()
            return message

        try:
            await self.app(scope, counted_receive, send)
        finally:
            read()


def _keep_safe_request_id(scope: Scope) -> None:
    headers = scope.get("headers", [])
    present = any(name == REQUEST_ID_HEADER.encode() for name, _ in headers)
    if present and incoming_request_id(scope) is None:
        scope["headers"] = [(name, value) for name, value in headers
                            if name != REQUEST_ID_HEADER.encode()]


def _client(scope: Scope) -> str:
    """A client is its credential (a digest: the secret stays out of memory dumps), or its
    address when it sends none."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return "key:" + hashlib.sha256(value).hexdigest()
    host = (scope.get("client") or ("unknown", 0))[0]
    return f"address:{host}"


async def _too_many_open(send: Send, limit: int) -> None:
    body = json.dumps({"error": {
        "message": f"This client already has {limit} requests sending their bodies; finish "
                   "those first.",
        "type": "rate_limit_error", "param": None, "code": "too_many_open_requests"}}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": body})
