"""The control plane: one owner of the store, shared by every ingress replica on every node.

The ingress reaches it through :class:`ControlPlaneAPI`: in Serve, :class:`RemoteCalls` over
the deployment's handle; in-process, :class:`AsyncStore` directly. The ingress caches key
lookups and batches usage (app/auth.py, app/usage_meter.py), so a request pays at most one round
trip here and usually none (docs/architecture.md, "The shape").
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ray import serve

from control.keys import KeyRecord
from control.quota_book import Grant, QuotaBook
from control.store import Store


class ControlPlaneAPI(Protocol):
    async def key_by_hash(self, digest: str) -> KeyRecord | None: ...

    async def project(self, project_id: str) -> dict[str, Any] | None: ...

    async def default_project_id(self) -> str: ...

    async def add_usage(self, rows: list[dict[str, Any]]) -> None: ...

    async def usage(self, project_id: str | None, since: str | None) -> list[dict[str, Any]]: ...

    async def project_limits(self, project_id: str) -> tuple[int, int]: ...

    async def quota_grant(self, project_id: str, need: tuple[int, int],
                          want: tuple[int, int]) -> Grant: ...


class AsyncStore:
    """The store's calls the ingress needs, off the event loop (SQLite blocks)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.quotas = QuotaBook()

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
