"""What the ingress needs from the model deployments, and its Serve implementation.

The ingress talks to models only through :class:`ModelBackend`, so the starlette app can be
tested in-process with a double (tests/) and run in Serve with :class:`ServeModels`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, cast

from app.coalescing import CallCoalescer
from app.errors import APIError, model_not_found
from app.protocol import MAX_EMBEDDING_INPUTS, ModelCard

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


def _unavailable(message: str, code: str, retry_after: int) -> APIError:
    return APIError(503, message, code=code, headers={"Retry-After": str(retry_after)})


def overloaded(model: str) -> APIError:
    return _unavailable(
        f"The model '{model}' is serving as many requests as it can queue; retry shortly.",
        "overloaded", RETRY_AFTER_SECONDS)


def replica_failed(model: str) -> APIError:
    return _unavailable(
        f"The replica of the model '{model}' working on this request stopped; it is being "
        "replaced, retry shortly.", "replica_failed", RETRY_AFTER_SECONDS)


def no_replica_ready(model: str, waited_s: float) -> APIError:
    return _unavailable(
        f"No replica of the model '{model}' took the request within {waited_s:g} s (it may be "
        "starting up from zero or busy); retry shortly.",
        "no_replica_ready", COLD_START_RETRY_AFTER_SECONDS)


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
    model card from the config, for a model that can scale to zero).
    """

    def __init__(self, models: dict[str, tuple[str, Any, dict[str, Any]]]) -> None:
        self._handles = models
        self._described: dict[str, ModelCard] = {}
        self._lock = asyncio.Lock()
        # Every embedding request reaches its replica through ``embed_many``. Without
        # ``ingress_calls_in_flight`` each request is its own call, sent at once.
        self._coalescers = {
            model: self._coalescer(model, route.get("ingress_calls_in_flight") or sys.maxsize,
                                   route.get("max_queued_requests", -1))
            for model, (task, _, route) in models.items()
            if task == "embedding"
        }

    def _coalescer(self, model: str, calls_in_flight: int, max_queued: int) -> CallCoalescer:
        handle = self._handles[model][1]

        async def send(bodies: list[dict[str, Any]]) -> list[Reply]:
            _, replies = await self._first(
                model, lambda: handle.embed_many.remote(bodies), _resolved)
            return cast(list[Reply], replies)

        return CallCoalescer(
            send, calls_in_flight, max_waiting=sys.maxsize if max_queued < 0 else max_queued,
            max_inputs_per_call=MAX_EMBEDDING_INPUTS, refuse=lambda: overloaded(model))

    async def cards(self) -> list[ModelCard]:
        # A model's card (context length, dimensions) comes from a replica that has loaded
        # it, once; it does not change while the app runs. A model that may have no replica
        # is not woken up for a listing: its card comes from the config.
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

    async def _first(self, model: str, call: Callable[[], Any],
                     first_of: Callable[[Any], Awaitable[Any]]) -> tuple[Any, Any]:
        """Start a call and await its first result (a whole reply, or a stream's first item).
        If its replica died before that (nothing reached the client yet), the call is made
        again, on another replica, up to ``REPLICA_FAILURE_RETRIES`` times."""
        for attempt in range(REPLICA_FAILURE_RETRIES + 1):
            last = attempt == REPLICA_FAILURE_RETRIES
            response = call()
            try:
                with _admission(model):
                    await self._assigned(model, response)
                    first = await first_of(response)
            except APIError as exc:
                if exc.code != "replica_failed" or last:
                    raise
            else:
                if not _replica_failed_reply(first) or last:
                    return response, first
            await asyncio.sleep(REPLICA_FAILURE_RETRY_DELAY_S)
        raise AssertionError("unreachable")

    async def chat(self, model: str, body: dict[str, Any]) -> Reply:
        handle = self._handles[model][1]
        _, reply = await self._first(
            model, lambda: handle.chat.remote(ChatRequestBody(body)), _resolved)
        return cast(Reply, reply)

    async def chat_stream(
        self, model: str, body: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[StreamItem]:
        handle = self._handles[model][1].options(stream=True)
        # A rejection (full queue, dead replica) surfaces with the first item.
        items, first = await self._first(
            model, lambda: handle.chat_stream.remote(ChatRequestBody(body), include_usage), anext)
        yield first
        async for item in items:
            yield item

    async def embed(self, model: str, body: dict[str, Any]) -> Reply:
        reply = await self._coalescers[model].submit(body)
        if "failed" in reply:  # it failed alone on the replica, which logged why
            raise RuntimeError(f"the embedding replica failed on this request: {reply['failed']}")
        return reply


async def _resolved(response: Awaitable[Any]) -> Any:
    return await response
