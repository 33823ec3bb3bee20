"""The public HTTP API: the route families of app/routes under ``/v1`` and
``/<project-id>/v1``, the error handlers and the middleware, assembled once.

Middleware order, outermost first, and why:
1. :class:`RequestMetrics`: sees every request and the status it finally got, a 500 included.
2. :class:`RequestId`: mints or echoes ``x-request-id``, so every response below carries it.
3. :class:`ServerErrors`: turns any unexpected exception into the generic 500 envelope, inside
   the id middleware so that the 500 carries the id too.
4. :class:`ModelNotice`: a deprecated or retired model's lifecycle headers on its replies.
5. starlette's exception middleware: maps :class:`APIError` and routing errors (404, 405) to
   the envelope, once, at the edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

from app.errors import APIError, error_response
from app.middleware.model_notice import ModelNotice
from app.middleware.request_id import RequestId
from app.middleware.request_metrics import RequestMetrics
from app.middleware.server_errors import ServerErrors
from app.model_catalog import ModelCatalog
from app.model_handles import ModelBackend
from app.routes import V1_ROUTES
from app.services import Limits, Services, services_of
from control.deployment import ControlPlaneAPI


class ProjectConvertor(StringConvertor):
    """A project segment: anything but ``v1`` (or ``v2``, of ``/v2/rerank``), so ``/v1/...``
    is never read as a project (which would turn a 405 on a known route into a 404)."""

    regex = r"(?!v[12](?:/|$))[^/]+"


register_url_convertor("project", ProjectConvertor())


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """A path that is no route, or a method the route does not take: answered only to a
    caller with a valid key, so that the route table is not probed without one."""
    assert isinstance(exc, HTTPException)
    if request.url.path != "/health":  # open to anyone, whatever the method
        try:
            await services_of(request).auth.key(request.headers)
        except APIError as denied:
            return error_response(denied)
    if exc.status_code == 404:
        err = APIError(404, f"Unknown route: {request.method} {request.url.path}.")
    elif exc.status_code == 405:
        err = APIError(405, f"Method {request.method} is not allowed on {request.url.path}.",
                       headers=dict(exc.headers or {}))  # Allow: the methods it takes
    else:
        err = APIError(exc.status_code, str(exc.detail))
    return error_response(err)


def _families(routes: list[BaseRoute]) -> set[str]:
    """``chat`` for ``/v1/chat/completions``: the API family, a bounded metrics tag."""
    return {route.path.split("/")[2] for route in routes if isinstance(route, Route)}


def build_api(
    models: ModelBackend,
    control_plane: ControlPlaneAPI,
    *,
    limits: Limits | None = None,
    add_request_id_header: bool = True,
    usage_flush_seconds: float = 1.0,
    catalog: ModelCatalog | None = None,
) -> Starlette:
    services = Services(models, control_plane, limits or Limits(), usage_flush_seconds,
                        catalog)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        services.auth.close()  # no more background reads of the control plane
        services.quotas.close()
        await services.meter.close()  # what is still buffered reaches the ledger first

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        *V1_ROUTES,
        Mount("/{project:project}", app=Router(V1_ROUTES, redirect_slashes=False)),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestMetrics, families=_families(V1_ROUTES)),
            Middleware(RequestId, add_header=add_request_id_header),
            Middleware(ServerErrors),
            Middleware(ModelNotice),
        ],
        exception_handlers={APIError: on_api_error, HTTPException: on_http_error},
        lifespan=lifespan,
    )
    # A trailing slash is an unknown route, not a redirect to the host the client named.
    app.router.redirect_slashes = False
    app.state.services = services
    return app
