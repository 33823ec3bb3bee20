"""``GET /v1/usage``: the project's metered usage, per key, model, day and user."""

from __future__ import annotations

import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.errors import bad_request
from app.services import services_of


async def usage(request: Request) -> Response:
    services = services_of(request)
    who = await services.caller(request, "usage")
    since = request.query_params.get("since")
    if since is not None and not _is_day(since):
        raise bad_request("'since' must be a day, YYYY-MM-DD.", param="since")
    await services.meter.flush()  # this replica's own recent requests, before reading
    rows = await services.control_plane.usage(who.project_id, since)
    return JSONResponse({"object": "list", "data": rows})


def _is_day(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


ROUTES = [Route("/v1/usage", usage, methods=["GET"])]
