"""``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.protocol import ModelList
from app.services import services_of


async def list_models(request: Request) -> Response:
    services = services_of(request)
    await services.caller(request, "model")
    cards = services.catalog.listing(await services.models.cards())
    return JSONResponse(ModelList(data=cards).model_dump(exclude_none=True))


async def get_model(request: Request) -> Response:
    """A model's card; an alias's is its model's (the card says its aliases)."""
    services = services_of(request)
    await services.caller(request, "model")
    model_id = services.catalog.named(request.path_params["model_id"])
    card = services.catalog.retired_card(model_id)
    if card is None:
        await services.models.task_of(model_id)  # 404 for an unknown id
        card = next(services.catalog.described(c) for c in await services.models.cards()
                    if c.id == model_id)
    request.state.model_notice = services.catalog.resolve(model_id).notice
    return JSONResponse(card.model_dump(exclude_none=True))


ROUTES = [
    Route("/v1/models", list_models, methods=["GET"]),
    # Model ids may hold '/' and ':' (docs/api.md, "Models").
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
]
