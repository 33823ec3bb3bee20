"""What the ingress needs from the model deployments, and its Serve implementation.

The ingress talks to models only through :class:`ModelBackend`, so the starlette app can be
tested in-process with a double (tests/) and run in Serve with :class:`ServeModels`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from app.errors import APIError, model_not_found
from app.protocol import ModelCard

# A model deployment's reply: {"status": int, "body": dict}; streams yield SSE frames (str),
# the first item possibly such a reply instead when the request fails before it starts, the
# last possibly {"usage": dict} (final counts for metering, not for the client).
Reply = dict[str, Any]
StreamItem = str | Reply


class ModelBackend(Protocol):
    async def cards(self) -> list[ModelCard]: ...

    async def task_of(self, model: str) -> str:
        """``chat`` or ``embedding``; raises the contract's 404 for an unknown model."""
        ...

    async def chat(self, model: str, body: dict[str, Any]) -> Reply: ...

    def chat_stream(
        self, model: str, body: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[StreamItem]: ...

    async def embed(self, model: str, body: dict[str, Any]) -> Reply: ...


# Seconds a client should wait before retrying when replicas are full or starting.
RETRY_AFTER_SECONDS = 1


def overloaded(model: str) -> APIError:
    return APIError(
        503,
        f"The model '{model}' is serving as many requests as it can queue; retry shortly.",
        code="overloaded",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@contextmanager
def _admission(model: str) -> Iterator[None]:
    """A full replica queue (Serve's ``max_queued_requests``) or no replica at all is a fast
    503 with ``Retry-After``, never a hang and never a 500 (the SDKs retry those)."""
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    try:
        yield
    except (BackPressureError, DeploymentUnavailableError) as exc:
        raise overloaded(model) from exc


class ServeModels:
    """Model deployments reached through Serve handles, keyed by public model id."""

    def __init__(self, handles: dict[str, tuple[str, Any]]) -> None:
        # model id -> (task, DeploymentHandle)
        self._handles = handles
        self._cards: list[ModelCard] | None = None
        self._lock = asyncio.Lock()

    async def cards(self) -> list[ModelCard]:
        # Asked once: a model's card (context length, dimensions) is known only once its
        # replica has loaded it, and it does not change while the app runs.
        async with self._lock:
            if self._cards is None:
                described = await asyncio.gather(
                    *(handle.describe.remote() for _, handle in self._handles.values())
                )
                self._cards = [ModelCard.model_validate(d) for d in described]
        return self._cards

    async def task_of(self, model: str) -> str:
        if model not in self._handles:
            raise model_not_found(model)
        return self._handles[model][0]

    async def chat(self, model: str, body: dict[str, Any]) -> Reply:
        with _admission(model):
            reply: Reply = await self._handles[model][1].chat.remote(body)
        return reply

    async def chat_stream(
        self, model: str, body: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[StreamItem]:
        handle = self._handles[model][1].options(stream=True)
        items = handle.chat_stream.remote(body, include_usage)
        with _admission(model):  # a rejection surfaces with the first item
            first = await anext(items)
        yield first
        async for item in items:
            yield item

    async def embed(self, model: str, body: dict[str, Any]) -> Reply:
        with _admission(model):
            reply: Reply = await self._handles[model][1].embed.remote(body)
        return reply
