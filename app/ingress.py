"""The ingress Serve deployment: the starlette API in front of the model deployments."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ray import serve
from starlette.applications import Starlette

from app.api import build_api
from app.http_front import HttpFront
from app.model_catalog import ModelCatalog
from app.model_handles import ServeModels
from app.services import Limits
from control.deployment import RemoteCalls
from messages import ModelRoute

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


@serve.deployment
@serve.ingress()
class Ingress:
    def __init__(self, models: dict[str, ModelRoute], control_plane: Any,
                 limits: dict[str, Any], catalog: ModelCatalog,
                 http_front: dict[str, Any] | None = None) -> None:
        # models: model id -> its route, for the models that run; limits: the fields of
        # app.services.Limits; catalog: aliases and lifecycles of every model; http_front:
        # host and port where this replica takes HTTP itself, or None behind Serve's proxy.
        self.models = ServeModels(models)
        self.control_plane = RemoteCalls(control_plane)
        self.limits = Limits(**limits)
        self.catalog = catalog
        self.http_front = http_front

    async def check_health(self) -> None:
        # Serve replaces a replica whose check raises: here, one whose in-ingress embedding
        # model can no longer encode (app/in_ingress.py).
        await self.models.check_health()

    async def __serve_build_asgi_app__(self) -> Starlette:
        # Serve's proxy sets x-request-id on every response; behind the ingress's own front
        # the API's RequestId middleware does.
        app = build_api(self.models, self.control_plane, limits=self.limits,
                        catalog=self.catalog,
                        add_request_id_header=self.http_front is not None)
        if self.http_front is not None:
            # Serve runs this on the replica's event loop, the one the API's handles and
            # tasks use; the front serves from that loop too.
            await serve_own_front(app, **self.http_front)
        return app


async def serve_own_front(app: Starlette, host: str, port: int) -> None:
    """Start ``app``'s own HTTP front on ``host:port`` from the running event loop, and make
    the app's lifespan stop it first when the replica stops."""
    front = HttpFront(app, host, port)
    await front.start()
    app.router.lifespan_context = _stopping_first(front, app.router.lifespan_context)


def _stopping_first(front: HttpFront, lifespan: Lifespan) -> Lifespan:
    """The API's lifespan, with the front stopped first when the replica stops: its socket
    closes (the replicas sharing the port take new connections) and the requests in flight
    finish while the usage meter still takes their usage."""

    @asynccontextmanager
    async def with_front(app: Starlette) -> AsyncIterator[None]:
        async with lifespan(app):
            try:
                yield
            finally:
                await front.stop()

    return with_front
