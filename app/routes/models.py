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
    cards = await services.models.cards()
    return JSONResponse(ModelList(data=cards).model_dump(exclude_none=True))


async def get_model(request: Request) -> Response:
    services = services_of(request)
    await services.caller(request, "model")
    model_id = request.path_params["model_id"]
    await services.models.task_of(model_id)  # 404 for an unknown id
    card = next(c for c in await services.models.cards() if c.id == model_id)
    return JSONResponse(card.model_dump(exclude_none=True))


ROUTES = [
    Route("/v1/models", list_models, methods=["GET"]),
    # Model ids may hold '/' and ':' (docs/api.md, "Models").
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
]
