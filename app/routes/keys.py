"""``/v1/keys``: list, create and revoke API keys (docs/api.md, "Administration"). A secret is
in the reply to its creation only; no listing shows a secret or its hash."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.admin import Admin, Reach, admin_caller, done, json_body
from app.auth import forbidden
from app.body import validated
from app.errors import APIError
from app.protocol import KeyCreateRequest
from control.keys import KeyRecord

GRANTED_BY_ADMINISTRATORS = "AllProductsFullAccess"


def _visible(admin: Admin, key: dict[str, Any]) -> bool:
    reach = admin.reach
    if admin.project is not None and not (key["organization"]
                                          or admin.project in key["projects"]):
        return False
    if reach.keys_everywhere:
        return True
    return not key["organization"] and any(reach.manages_keys_of(p) for p in key["projects"])


async def list_keys(request: Request) -> Response:
    services, admin = await admin_caller(request)
    keys = await services.control_plane.list_keys()
    return JSONResponse({"object": "list", "data": [k for k in keys if _visible(admin, k)]})


def _may_grant(reach: Reach, sets: list[str], projects: list[str] | None) -> str | None:
    """Why ``reach`` may not grant ``sets`` over ``projects`` (None: the organisation), or
    None when it may."""
    if projects is None:
        if not reach.admin_everywhere:
            return ("An organisation-wide key takes AllProductsFullAccess over the whole "
                    "organisation to create.")
        return None
    if not all(reach.manages_keys_of(p) for p in projects):
        return "This API key does not grant managing the keys of every project named."
    if GRANTED_BY_ADMINISTRATORS in sets and not all(reach.administers(p) for p in projects):
        return "Granting AllProductsFullAccess takes AllProductsFullAccess over its projects."
    return None


async def create_key(request: Request) -> Response:
    services, admin = await admin_caller(request)
    body = validated(KeyCreateRequest, await json_body(request, services))
    sets: list[str] = list(body.permission_sets)
    refusal = _may_grant(admin.reach, sets, body.projects)
    if refusal is not None:
        raise forbidden(refusal)
    return done(await services.control_plane.create_key(
        sets, body.projects, body.name, body.expires_at_unix(), admin.actor))


def _may_revoke(reach: Reach, key: KeyRecord) -> bool:
    """A key may revoke the keys it could have created."""
    projects = [g.project_id for g in key.grants]
    scope = None if None in projects or not projects else [p for p in projects if p]
    return _may_grant(reach, [g.permission_set for g in key.grants], scope) is None


async def revoke_key(request: Request) -> Response:
    services, admin = await admin_caller(request)
    key_id = request.path_params["key_id"]
    key = await services.control_plane.key(key_id)
    if key is None and admin.reach.keys_everywhere:
        raise APIError(404, f"Key '{key_id}' does not exist.", code="key_not_found")
    if key is None or not _may_revoke(admin.reach, key):  # no probing for key ids
        raise forbidden("This API key does not grant revoking that key.")
    return done(await services.control_plane.revoke_key(key_id, admin.actor))


ROUTES = [
    Route("/v1/keys", list_keys, methods=["GET"]),
    Route("/v1/keys", create_key, methods=["POST"]),
    Route("/v1/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
