"""Administration rights: which projects a key manages, and who makes a change (docs/api.md,
"Administration").

``AllProductsFullAccess`` administers its scope: it creates (organisation-wide only),
changes and deletes projects, and grants any permission set there. ``GenerativeApisFullAccess``
manages the keys of its projects: it reads those projects, lists, creates and revokes their
keys, and reads their audit entries, but creates no organisation-wide key and grants no
``AllProductsFullAccess``. ``GenerativeApisModelAccess`` administers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.auth import forbidden
from app.body import read_json
from app.errors import APIError
from app.services import Services, services_of
from control.keys import KeyRecord
from control.store import Actor

KEY_MANAGERS = frozenset({"GenerativeApisFullAccess", "AllProductsFullAccess"})
ADMINISTRATORS = frozenset({"AllProductsFullAccess"})


@dataclass(frozen=True)
class Reach:
    """The projects a key manages the keys of, and those it administers (``everywhere``:
    every project of the organisation, those made later included)."""

    keys_everywhere: bool
    key_projects: frozenset[str]
    admin_everywhere: bool
    admin_projects: frozenset[str]

    @classmethod
    def of(cls, key: KeyRecord) -> Reach:
        def scope(sets: frozenset[str]) -> tuple[bool, frozenset[str]]:
            grants = [g for g in key.grants if g.permission_set in sets]
            return (any(g.project_id is None for g in grants),
                    frozenset(g.project_id for g in grants if g.project_id is not None))

        return cls(*scope(KEY_MANAGERS), *scope(ADMINISTRATORS))

    @property
    def any(self) -> bool:
        return self.keys_everywhere or bool(self.key_projects)

    def manages_keys_of(self, project: str) -> bool:
        return self.keys_everywhere or project in self.key_projects

    def administers(self, project: str) -> bool:
        return self.admin_everywhere or project in self.admin_projects


@dataclass(frozen=True)
class Admin:
    """A caller of an administration route: their key, its reach, the project the path
    names (None for plain ``/v1/...``: every project the key reaches) and, for the audit log,
    who they are."""

    key: KeyRecord
    reach: Reach
    project: str | None
    actor: Actor


async def admin_caller(request: Request) -> tuple[Services, Admin]:
    """The caller of an administration route; raises the contract's 401, 403 or 404."""
    services = services_of(request)
    auth = services.auth
    key = await auth.key(request.headers)
    reach = Reach.of(key)
    if not reach.any:
        raise forbidden("This API key does not grant administration of any project.")
    named = request.path_params.get("project")
    project = None if named is None else await auth.project_of(key, named)
    if project is not None and not reach.manages_keys_of(project):
        raise forbidden("This API key does not grant administration of this project.")
    address = request.client.host if request.client else None
    return services, Admin(key, reach, project, Actor(key.id, address))


async def json_body(request: Request, services: Services) -> dict[str, Any]:
    limits = services.limits
    return await read_json(request, limits.max_body_bytes, limits.body_timeout_s)


def done(result: Any) -> JSONResponse:
    """A change's result, or the store's refusal raised as the API's error."""
    if isinstance(result, APIError):
        raise result
    return JSONResponse(result)
