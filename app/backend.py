"""What the ingress needs from the model deployments, and its Serve implementation.

The ingress talks to models only through :class:`ModelBackend`, so the starlette app can be
tested in-process with a double (tests/) and run in Serve with :class:`ServeModels`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
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


def replica_failed(model: str) -> APIError:
    return APIError(
        503,
        f"The replica of the model '{model}' working on this request stopped; it is being "
        "replaced, retry shortly.",
        code="replica_failed",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def no_replica_ready(model: str, waited_s: float) -> APIError:
    return APIError(
        503,
        f"No replica of the model '{model}' took the request within {waited_s:g} s (it may be "
        "starting up from zero or busy); retry shortly.",
        code="no_replica_ready",
        headers={"Retry-After": str(COLD_START_RETRY_AFTER_SECONDS)},
    )


# Seconds a client should wait before retrying when no replica was ready (a start from zero
# takes seconds to minutes: model loading).
COLD_START_RETRY_AFTER_SECONDS = 5


# A request whose replica died before it produced anything (no output was delivered) is
# sent again, to another replica, this many times at most, this long apart.
REPLICA_FAILURE_RETRIES = 2
REPLICA_FAILURE_RETRY_DELAY_S = 0.5


def _replica_failed_reply(item: Any) -> bool:
    return (isinstance(item, dict) and item.get("status") == 503
            and item.get("body", {}).get("error", {}).get("code") == "replica_failed")


class ChatRequestBody(dict[str, Any]):
    """A chat request body as it crosses the Serve handle: a plain dict that also shows its
    ``messages`` as an attribute, which is where Serve's prefix-aware request router
    (``PrefixCacheAffinityRouter``) reads the prompt from."""

    @property
    def messages(self) -> Any:
        return self.get("messages")


@contextmanager
def _admission(model: str) -> Iterator[None]:
    """A full replica queue (Serve's ``max_queued_requests``) or no replica at all is a fast
    503 with ``Retry-After``, never a hang and never a 500 (the SDKs retry those)."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    try:
        yield
    except (BackPressureError, DeploymentUnavailableError) as exc:
        raise overloaded(model) from exc
    except RayActorError as exc:
        # The replica's process or node died with the request on it; Serve is replacing it.
        raise replica_failed(model) from exc


class ServeModels:
    """Model deployments reached through Serve handles, keyed by public model id.

    ``models`` maps a public model id to ``(task, handle, route)``; ``route`` holds what the
    config says of the model: ``wait_for_replica_s`` (longest wait for a replica to take a
    request, or None), ``scales_to_zero`` (it may have no replica at all) and ``card`` (its
    model card as far as the config knows it).
    """

    def __init__(self, models: dict[str, tuple[str, Any, dict[str, Any]]]) -> None:
        self._handles = models
        self._described: dict[str, ModelCard] = {}
        self._lock = asyncio.Lock()
        self._describing: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()

    async def cards(self) -> list[ModelCard]:
        # A model's full card (context length, dimensions) comes from a replica that has
        # loaded it, once; it does not change while the app runs. A model that may have no
        # replica is not woken up for a listing: until one of its replicas has served, it
        # lists with what the config says.
        async with self._lock:
            ask = [m for m, (_, _, route) in self._handles.items()
                   if m not in self._described and not route["scales_to_zero"]]
            described = await asyncio.gather(
                *(self._handles[m][1].describe.remote() for m in ask)
            )
            for model, card in zip(ask, described, strict=True):
                self._described[model] = ModelCard.model_validate(card)
        return [self._described.get(m) or ModelCard.model_validate(route["card"])
                for m, (_, _, route) in self._handles.items()]

    def _served(self, model: str) -> None:
        """A request was served, so the model has a replica now: learn its full card."""
        if model in self._described or model in self._describing:
            return
        self._describing.add(model)

        async def describe() -> None:
            try:
                card = await self._handles[model][1].describe.remote()
                self._described[model] = ModelCard.model_validate(card)
            finally:
                self._describing.discard(model)

        task = asyncio.get_running_loop().create_task(describe())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def task_of(self, model: str) -> str:
        if model not in self._handles:
            raise model_not_found(model)
        return self._handles[model][0]

    async def _assigned(self, model: str, response: Any) -> None:
        """Wait until a replica has taken ``response``'s request, at most the model's
        ``wait_for_replica_s``; past that the request is withdrawn and the client gets a 503
        with Retry-After. (Serve resolves a handle call in two steps, replica assignment then
        result; the first is reached through the response's assignment future.)"""
        wait = self._handles[model][2]["wait_for_replica_s"]
        if wait is None:
            return
        try:
            await asyncio.wait_for(
                asyncio.shield(response._fetch_future_result_async()), wait
            )
        except TimeoutError:
            response.cancel()
            raise no_replica_ready(model, wait) from None

    async def _unary(self, model: str, call: Callable[[], Any]) -> Reply:
        """One whole-reply call, sent again on another replica if its replica died first."""
        for attempt in range(REPLICA_FAILURE_RETRIES + 1):
            last = attempt == REPLICA_FAILURE_RETRIES
            try:
                with _admission(model):
                    response = call()
                    await self._assigned(model, response)
                    reply: Reply = await response
            except APIError as exc:
                if exc.code != "replica_failed" or last:
                    raise
            else:
                if not _replica_failed_reply(reply) or last:
                    self._served(model)
                    return reply
            await asyncio.sleep(REPLICA_FAILURE_RETRY_DELAY_S)
        raise AssertionError("unreachable")

    async def chat(self, model: str, body: dict[str, Any]) -> Reply:
        handle = self._handles[model][1]
        return await self._unary(model, lambda: handle.chat.remote(ChatRequestBody(body)))

    async def chat_stream(
        self, model: str, body: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[StreamItem]:
        handle = self._handles[model][1].options(stream=True)
        for attempt in range(REPLICA_FAILURE_RETRIES + 1):
            last = attempt == REPLICA_FAILURE_RETRIES
            items = handle.chat_stream.remote(ChatRequestBody(body), include_usage)
            try:
                with _admission(model):  # a rejection surfaces with the first item
                    await self._assigned(model, items)
                    first = await anext(items)
            except APIError as exc:
                if exc.code != "replica_failed" or last:
                    raise
            else:
                if not _replica_failed_reply(first) or last:
                    break
            # Nothing reached the client yet: start over on another replica.
            await asyncio.sleep(REPLICA_FAILURE_RETRY_DELAY_S)
        self._served(model)
        yield first
        async for item in items:
            yield item

    async def embed(self, model: str, body: dict[str, Any]) -> Reply:
        handle = self._handles[model][1]
        return await self._unary(model, lambda: handle.embed.remote(body))
