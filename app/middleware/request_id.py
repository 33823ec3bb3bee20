"""Every request gets an id: the client's ``x-request-id`` when it is safe to repeat, a new
one otherwise. Handlers and logs read it from ``request.state.request_id``."""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"


class RequestId:
    """Behind Serve's proxy the id is already in the request headers and the proxy puts it on
    the response, so ``add_header`` is off there; standalone it is on."""

    def __init__(self, app: ASGIApp, add_header: bool = True) -> None:
        self.app = app
        self.add_header = add_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        if not self.add_header:
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []),
                           (REQUEST_ID_HEADER.encode(), request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1").strip()
            # Echo only ids that are safe to put back in a header and a log line.
            if 0 < len(text) <= 128 and all(c.isalnum() or c in "-_.:" for c in text):
                return text
    return None
