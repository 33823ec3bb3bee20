"""A reply for a deprecated or end-of-life model carries its lifecycle headers
(``Deprecation``, ``Sunset``, ``Link``: app/model_catalog.py), whatever route answered it,
whole or streamed, an error included: the route that resolved the model leaves them in
``request.state.model_notice`` and they are added as the response starts."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ModelNotice:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One state dict for the whole request, made here so that every scope copied from
        # this one below (mounted routers) shares it.
        state = scope.setdefault("state", {})

        async def send_with_notice(message: Message) -> None:
            notice: dict[str, str] = state.get("model_notice") or {}
            if message["type"] == "http.response.start" and notice:
                headers = [*message.get("headers", []),
                           *((name.lower().encode(), value.encode('latin-1'))
                             for name, value in notice.items())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_notice)
