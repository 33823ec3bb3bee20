"""``GET /v1/audit``: the audit log of changes to projects and keys, newest first
(docs/api.md, "Administration")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.admin import admin_caller
from app.errors import bad_request

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def _whole_number(request: Request, name: str, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad_request(f"'{name}' must be a whole number from {low} to {high}.", param=name)
    return int(text)


async def audit(request: Request) -> Response:
    services, admin = await admin_caller(request)
    limit = _whole_number(request, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    after = _whole_number(request, "after", 0, 2**62)
    reach = admin.reach
    projects: list[str] | None
    if admin.project is not None:
        projects = [admin.project]
    elif reach.keys_everywhere:
        projects = None
    else:
        projects = sorted(reach.key_projects)
    entries, more = await services.control_plane.audit(projects, limit, after)
    return JSONResponse({"object": "list", "data": entries, "has_more": more})


ROUTES = [Route("/v1/audit", audit, methods=["GET"])]
