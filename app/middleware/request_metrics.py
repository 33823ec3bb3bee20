"""Requests by status and their latency (app/metrics.py), tagged by what the handler learned
(model, project) and by API family."""

from __future__ import annotations

import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics


class RequestMetrics:
    def __init__(self, app: ASGIApp, families: Collection[str]) -> None:
        self.app = app
        # Tags are bounded: a path outside the route table is "other".
        self.families = frozenset(families)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["arrived"] = time.monotonic()
        status = 500  # what the client gets if nothing is sent

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            self._observe(scope, state, status)

    def _observe(self, scope: Scope, state: dict[str, object], status: int) -> None:
        path: str = scope.get("path", "")
        route = path.rsplit("/v1/", 1)[-1].split("/", 1)[0] if "/v1/" in path else ""
        if route not in self.families:
            route = "health" if path == "/health" else "other"
        model = str(state.get("model", ""))
        metrics.requests.inc(tags={"route": route, "model": model,
                                   "project": str(state.get("project", "")),
                                   "status": str(status)})
        metrics.latency.observe(time.monotonic() - float(state["arrived"]),  # type: ignore[arg-type]
                                tags={"route": route, "model": model, "status": str(status)})
