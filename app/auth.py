"""API keys, permission sets and projects (docs/api.md, "Authentication, permissions and
projects").

A key's secret never leaves this module: it is hashed at once, the hash is what the cache and
the control plane see, and no message, log line or exception carries either.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers

from app.control_plane_cache import ControlPlaneCache
from app.errors import APIError
from control.deployment import ControlPlaneAPI
from control.keys import KeyRecord, hash_secret

Need = Literal["model", "usage"]

# What each permission set grants within its scope (a project, or the whole organisation).
GRANTS: dict[str, frozenset[str]] = {
    "GenerativeApisModelAccess": frozenset({"model"}),
    "GenerativeApisFullAccess": frozenset({"model", "usage"}),
    "AllProductsFullAccess": frozenset({"model", "usage"}),
}

# A revoked key stops working on every replica within this many seconds (an expired one at
# once: its expiry is checked on every request).
KEY_CACHE_SECONDS = 2.0
# A key's last use is written to the store at most this often per key and replica.
LAST_USE_SECONDS = 60.0
log = logging.getLogger(__name__)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def unauthenticated(message: str) -> APIError:
    return APIError(401, message, code="invalid_api_key", headers=_CHALLENGE)


def forbidden(message: str) -> APIError:
    return APIError(403, message, code="permission_denied")


@dataclass(frozen=True)
class Caller:
    key_id: str
    project_id: str


def may(key: KeyRecord, project_id: str, need: Need) -> bool:
    return any(
        need in GRANTS.get(g.permission_set, ()) and g.project_id in (None, project_id)
        for g in key.grants
    )


def _bearer_secret(headers: Headers) -> str:
    values = headers.getlist("authorization")
    if not values:
        raise unauthenticated(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
        )
    if len(values) > 1:  # which one was meant is not ours to guess
        raise unauthenticated("More than one Authorization header; send exactly one.")
    [value] = values
    scheme, _, secret = value.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or " " in secret:
        raise unauthenticated("Malformed Authorization header; expected 'Bearer <key>'.")
    return secret


class Authenticator:
    def __init__(self, control_plane: ControlPlaneAPI, ttl: float = KEY_CACHE_SECONDS) -> None:
        self.control_plane = control_plane
        # Key records by hash (None: no such key) and whether a project exists.
        self._keys: ControlPlaneCache[str, KeyRecord | None] = ControlPlaneCache(
            control_plane.key_by_hash, ttl, worth_keeping=lambda key: key is not None)
        self._projects: ControlPlaneCache[str, bool] = ControlPlaneCache(
            self._fetch_project_exists, ttl, worth_keeping=bool)
        self._default_project: str | None = None
        self._used: dict[str, float] = {}  # key id -> when its last use was last written
        self._writes: set[asyncio.Task[None]] = set()

    async def key(self, headers: Headers) -> KeyRecord:
        """The caller's key; raises the contract's 401 for a missing, malformed or unknown
        one."""
        key = await self._key(hash_secret(_bearer_secret(headers)))
        if key is None:
            raise unauthenticated("Incorrect API key provided.")
        if key.expired(time.time()):
            raise unauthenticated("This API key has expired.")
        self._note_use(key.id)
        return key

    async def project_of(self, key: KeyRecord, project: str | None) -> str:
        """The project a request names (the default one if none); raises the contract's
        404 or 403 for one that does not exist."""
        return await self._project_id(key, project)

    def _note_use(self, key_id: str) -> None:
        """Write a key's last use to the store, at most once a minute per key, off the
        request's path."""
        now = time.monotonic()
        if now - self._used.get(key_id, -LAST_USE_SECONDS) < LAST_USE_SECONDS:
            return
        self._used[key_id] = now
        # In a context of its own: a request's cancellation must not cancel the write.
        write = asyncio.get_running_loop().create_task(self._write_use(key_id),
                                                       context=contextvars.Context())
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def _write_use(self, key_id: str) -> None:
        try:
            await self.control_plane.touch_key(key_id)
        except Exception:  # a missed last-use time is not worth failing a request
            log.warning("could not record the last use of key %s", key_id, exc_info=True)

    async def caller(self, headers: Headers, project: str | None, need: Need) -> Caller:
        """Who is calling, for which project; raises the contract's 401/403/404."""
        key = await self.key(headers)
        project_id = await self._project_id(key, project)
        if not may(key, project_id, need):
            what = "this project's usage" if need == "usage" else "models in this project"
            raise forbidden(f"This API key does not grant access to {what}.")
        return Caller(key.id, project_id)

    def close(self) -> None:
        """Stop refreshing cached lookups (the replica is stopping)."""
        self._keys.close()
        self._projects.close()

    async def _key(self, digest: str) -> KeyRecord | None:
        return await self._keys.get(digest)

    async def _project_id(self, key: KeyRecord, project: str | None) -> str:
        if project is None:
            if self._default_project is None:
                self._default_project = await self.control_plane.default_project_id()
            return self._default_project
        if await self._project_exists(project):
            return project
        # No probing for project ids: only a key that could see every project learns that
        # this one does not exist.
        if any(g.project_id is None for g in key.grants):
            raise APIError(404, f"Project '{project}' does not exist.", code="project_not_found")
        raise forbidden("This API key does not grant access to this project.")

    async def _project_exists(self, project: str) -> bool:
        try:
            uuid.UUID(project)
        except ValueError:
            return False
        return await self._projects.get(project)

    async def _fetch_project_exists(self, project: str) -> bool:
        return await self.control_plane.project(project) is not None
