"""The control plane: one owner of the store, shared by every ingress replica on every node.

The ingress reaches it through :class:`ControlPlaneAPI`: in Serve, :class:`RemoteCalls` over
the deployment's handle; in-process, :class:`AsyncStore` directly. The ingress caches key
lookups and batches usage (app/auth.py, app/usage_meter.py), so a request pays at most one round
trip here and usually none (docs/architecture.md, "The shape").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from ray import serve

from control.keys import KeyRecord
from control.quota_book import ConcurrencyBook, Grant, QuotaBook
from control.store import Actor, Store, StoreError
from messages import APIError


class ControlPlaneAPI(Protocol):
    async def key_by_hash(self, digest: str) -> KeyRecord | None: ...

    async def project(self, project_id: str) -> dict[str, Any] | None: ...

    async def default_project_id(self) -> str: ...

    async def add_usage(self, rows: list[dict[str, Any]]) -> None: ...

    async def usage(self, project_id: str | None, since: str | None) -> list[dict[str, Any]]: ...

    async def project_limits(self, project_id: str) -> tuple[int, int]: ...

    async def quota_grant(self, project_id: str, need: tuple[int, int],
                          want: tuple[int, int]) -> Grant: ...

    async def max_concurrent(self, project_id: str) -> int: ...

    async def concurrency_acquire(self, project_id: str, limit: int) -> str | None: ...

    async def concurrency_release(self, lease: str) -> None: ...

    async def touch_key(self, key_id: str) -> None: ...

    async def key(self, key_id: str) -> KeyRecord | None: ...

    # Stored responses (app/routes/responses.py): JSON text, as kept.
    async def store_response(self, project_id: str, record: dict[str, Any]) -> None: ...

    async def stored_response(self, project_id: str, response_id: str
                              ) -> tuple[str, str] | None: ...

    async def conversation(self, project_id: str, response_id: str
                           ) -> list[tuple[str, str]] | None: ...

    async def delete_response(self, project_id: str, response_id: str) -> bool: ...

    # Administration: each returns its result, or the APIError the store's refusal maps to
    # (returned, not raised, so that it crosses a Serve handle as itself).
    async def list_projects(self) -> list[dict[str, Any]]: ...

    async def create_project(self, name: str, rpm: int, tpm: int, max_concurrent: int,
                             actor: Actor) -> dict[str, Any] | APIError: ...

    async def update_project(self, project_id: str, changes: dict[str, Any],
                             actor: Actor) -> dict[str, Any] | APIError: ...

    async def delete_project(self, project_id: str, actor: Actor
                             ) -> dict[str, Any] | APIError: ...

    async def list_keys(self) -> list[dict[str, Any]]: ...

    async def create_key(self, permission_sets: list[str], projects: list[str] | None,
                         name: str | None, expires_at: int | None,
                         actor: Actor) -> dict[str, Any] | APIError: ...

    async def revoke_key(self, key_id: str, actor: Actor) -> dict[str, Any] | APIError: ...

    async def audit(self, projects: list[str] | None, limit: int, after: int | None
                    ) -> tuple[list[dict[str, Any]], bool]: ...


class AsyncStore:
    """The store's calls the ingress needs, off the event loop (SQLite blocks)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.quotas = QuotaBook()
        self.concurrency = ConcurrencyBook()

    async def key_by_hash(self, digest: str) -> KeyRecord | None:
        return await asyncio.to_thread(self.store.key_by_hash, digest)

    async def project(self, project_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.store.project, project_id)

    async def default_project_id(self) -> str:
        return await asyncio.to_thread(self.store.default_project_id)

    async def add_usage(self, rows: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.store.add_usage, rows)

    async def usage(self, project_id: str | None, since: str | None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.usage, project_id, since)

    async def project_limits(self, project_id: str) -> tuple[int, int]:
        return await asyncio.to_thread(self.store.project_limits, project_id)

    async def quota_grant(self, project_id: str, need: tuple[int, int],
                          want: tuple[int, int]) -> Grant:
        rpm, tpm = await self.project_limits(project_id)
        return self.quotas.grant(project_id, rpm, tpm, need, want)

    async def max_concurrent(self, project_id: str) -> int:
        return await asyncio.to_thread(self.store.max_concurrent, project_id)

    async def concurrency_acquire(self, project_id: str, limit: int) -> str | None:
        return self.concurrency.acquire(project_id, limit)

    async def concurrency_release(self, lease: str) -> None:
        self.concurrency.release(lease)

    async def touch_key(self, key_id: str) -> None:
        await asyncio.to_thread(self.store.touch_key, key_id)

    async def key(self, key_id: str) -> KeyRecord | None:
        return await asyncio.to_thread(self.store.key, key_id)

    async def store_response(self, project_id: str, record: dict[str, Any]) -> None:
        await asyncio.to_thread(self.store.store_response, project_id, record)

    async def stored_response(self, project_id: str, response_id: str
                              ) -> tuple[str, str] | None:
        return await asyncio.to_thread(self.store.stored_response, project_id, response_id)

    async def conversation(self, project_id: str, response_id: str
                           ) -> list[tuple[str, str]] | None:
        return await asyncio.to_thread(self.store.conversation, project_id, response_id)

    async def delete_response(self, project_id: str, response_id: str) -> bool:
        return await asyncio.to_thread(self.store.delete_response, project_id, response_id)

    async def list_projects(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.list_projects)

    async def create_project(self, name: str, rpm: int, tpm: int, max_concurrent: int,
                             actor: Actor) -> dict[str, Any] | APIError:
        return await _refusable(lambda: self.store.create_project(
            name, rpm, tpm, max_concurrent, actor=actor))

    async def update_project(self, project_id: str, changes: dict[str, Any],
                             actor: Actor) -> dict[str, Any] | APIError:
        return await _refusable(lambda: self.store.update_project(
            project_id, **changes, actor=actor))

    async def delete_project(self, project_id: str, actor: Actor
                             ) -> dict[str, Any] | APIError:
        return await _refusable(lambda: self.store.delete_project(project_id, actor=actor))

    async def list_keys(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.list_keys)

    async def create_key(self, permission_sets: list[str], projects: list[str] | None,
                         name: str | None, expires_at: int | None,
                         actor: Actor) -> dict[str, Any] | APIError:
        return await _refusable(lambda: self.store.create_key(
            permission_sets, projects, name, expires_at, actor=actor))

    async def revoke_key(self, key_id: str, actor: Actor) -> dict[str, Any] | APIError:
        return await _refusable(lambda: self.store.revoke_key(key_id, actor=actor))

    async def audit(self, projects: list[str] | None, limit: int, after: int | None
                    ) -> tuple[list[dict[str, Any]], bool]:
        return await asyncio.to_thread(self.store.audit, projects, limit, after)


async def _refusable(change: Callable[[], dict[str, Any]]) -> dict[str, Any] | APIError:
    """``change``'s result, or the store's refusal as the API's error."""
    try:
        return await asyncio.to_thread(change)
    except StoreError as refused:
        return APIError(refused.status, _sentence(str(refused)), param=refused.param,
                        code=refused.code)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class ControlPlane(AsyncStore):
    def __init__(self, state_dir: str) -> None:
        super().__init__(Store(state_dir))


class RemoteCalls:
    """A Serve deployment's methods as plain async calls: ``await rc.name(...)``."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._handle, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await method.remote(*args, **kwargs)

        return call
