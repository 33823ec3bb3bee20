"""Anything a handler did not expect is a bug: the client gets the generic 500 envelope with
the request id (never internals), and the traceback goes to the log."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response, server_error

logger = logging.getLogger("inference.api")


class ServerErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            request_id = scope["state"]["request_id"]
            logger.exception("request %s failed", request_id)
            if started:  # the response had started: nothing more can be sent
                raise
            await error_response(server_error(request_id))(scope, receive, send)
