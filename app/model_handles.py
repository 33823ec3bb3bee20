"""What the ingress needs from the model deployments, and its Serve implementation.

The ingress talks to models only through :class:`ModelBackend`, so the starlette app can be
tested in-process with a double (tests/support) and run in Serve with :class:`ServeModels`.
A model's refusal arrives as an :class:`APIError` and is raised here, so a route sees only
successful replies and chunks.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from app.coalescing import CallCoalescer
from app.errors import model_not_found, no_replica_ready, overloaded, replica_failed
from app.in_ingress import InIngressModel
from app.protocol import MAX_EMBEDDING_INPUTS
from messages import (
    APIError,
    ChatRequestBody,
    Chunk,
    CompletionRequestBody,
    EmbeddingJob,
    EmbeddingOutcome,
    EmbeddingWork,
    FinalUsage,
    ModelCard,
    ModelRoute,
    Progress,
    ReplicaUnavailable,
    Reply,
    RerankJob,
    StreamUsage,
    TranscriptionJob,
    UnexpectedFailure,
    Usage,
)


class ModelBackend(Protocol):
    async def cards(self) -> list[ModelCard]: ...

    async def task_of(self, model: str) -> str:
        """``chat``, ``embedding``, ``rerank`` or ``transcription``; raises the contract's 404 for an
        unknown model."""
        ...

    async def chat(self, model: str, body: dict[str, Any],
                   progress: Callable[[Usage], None]) -> Reply:
        """The whole reply; what it has generated so far goes to ``progress`` meanwhile."""
        ...

    def chat_stream(
        self, model: str, body: dict[str, Any], shown: StreamUsage
    ) -> AsyncIterator[Chunk | FinalUsage]: ...

    async def complete(self, model: str, body: dict[str, Any],
                       progress: Callable[[Usage], None]) -> Reply:
        """A legacy completion's whole reply, as :meth:`chat`."""
        ...

    def complete_stream(
        self, model: str, body: dict[str, Any], shown: StreamUsage
    ) -> AsyncIterator[Chunk | FinalUsage]: ...

    async def embed(self, model: str, job: EmbeddingJob) -> Reply: ...

    async def transcribe(self, model: str, job: TranscriptionJob) -> Reply: ...

    async def rerank(self, model: str, job: RerankJob) -> Reply:
        """A score per document, in their order (messages.RerankJob); an embedding or a
        rerank model."""
        ...


# A request whose replica died before it produced anything (no output was delivered) is
# sent again, to another replica, this many times at most, this long apart.
REPLICA_FAILURE_RETRIES = 2
REPLICA_FAILURE_RETRY_DELAY_S = 0.5


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


def _raise_refusal(outcome: Any, model: str) -> None:
    if isinstance(outcome, APIError):
        raise outcome
    if isinstance(outcome, ReplicaUnavailable):  # after every retry
        raise replica_failed(model)


class ServeModels:
    """Model deployments reached through Serve handles, keyed by public model id."""

    def __init__(self, routes: dict[str, ModelRoute]) -> None:
        self._routes = routes
        self._described: dict[str, ModelCard] = {}
        self._lock = asyncio.Lock()
        # A model placed in the ingress is loaded here, in this process (app/in_ingress.py).
        self._in_ingress = {
            model: InIngressModel(model, route.in_ingress_spec, route.max_requests)
            for model, route in routes.items() if route.in_ingress_spec is not None
        }
        # Every other embedding request reaches its replica through ``embed_many``. Without
        # ``ingress_calls_in_flight`` each request is its own call, sent at once.
        self._coalescers = {
            model: self._coalescer(model, route)
            for model, route in routes.items()
            if route.task == "embedding" and model not in self._in_ingress
        }

    def _coalescer(self, model: str, route: ModelRoute) -> CallCoalescer:
        async def send(jobs: list[EmbeddingWork]) -> list[EmbeddingOutcome]:
            _, outcomes = await self._first(
                model, lambda: route.handle.embed_many.remote(jobs), _resolved)
            return list(outcomes)

        max_queued = route.max_queued_requests
        return CallCoalescer(
            send, route.ingress_calls_in_flight or sys.maxsize,
            max_waiting=sys.maxsize if max_queued < 0 else max_queued,
            max_inputs_per_call=MAX_EMBEDDING_INPUTS, refuse=lambda: overloaded(model))

    async def cards(self) -> list[ModelCard]:
        # A model's card (context length, dimensions) comes from a replica that has loaded
        # it, once; it does not change while the app runs. A model that may have no replica
        # is not woken up for a listing: its card comes from the config.
        async with self._lock:
            for m, local in self._in_ingress.items():
                self._described.setdefault(m, await local.describe())
            ask = [m for m, route in self._routes.items()
                   if m not in self._described and not route.scales_to_zero]
            described = await asyncio.gather(
                *(self._routes[m].handle.describe.remote() for m in ask))
            self._described.update(zip(ask, described, strict=True))
        cards = (self._described.get(m) or route.card for m, route in self._routes.items())
        return [card for card in cards if card is not None]

    async def task_of(self, model: str) -> str:
        if model not in self._routes:
            raise model_not_found(model)
        return self._routes[model].task

    async def _assigned(self, model: str, response: Any) -> None:
        """Wait until a replica has taken ``response``'s request, at most the model's
        ``wait_for_replica_s``; past that the request is withdrawn and the client gets a 503
        with Retry-After. (Serve resolves a handle call in two steps, replica assignment then
        result; the first is reached through the response's assignment future.)"""
        wait = self._routes[model].wait_for_replica_s
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
            except asyncio.CancelledError:
                # The request ended here first (its client left): the replica's work on it
                # stops too. Said here, not left to Serve: a request the ingress took itself
                # (app/http_front.py) is no Serve request whose end Serve would pass on.
                response.cancel()
                raise
            except APIError as exc:
                if exc.code != "replica_failed" or last:
                    raise
            else:
                if not isinstance(first, ReplicaUnavailable) or last:
                    return response, first
            await asyncio.sleep(REPLICA_FAILURE_RETRY_DELAY_S)
        raise AssertionError("unreachable")

    async def chat(self, model: str, body: dict[str, Any],
                   progress: Callable[[Usage], None]) -> Reply:
        return await self._whole(model, "chat_with_progress", ChatRequestBody(body), progress)

    def chat_stream(
        self, model: str, body: dict[str, Any], shown: StreamUsage
    ) -> AsyncIterator[Chunk | FinalUsage]:
        return self._stream(model, "chat_stream", ChatRequestBody(body), shown)

    async def complete(self, model: str, body: dict[str, Any],
                       progress: Callable[[Usage], None]) -> Reply:
        return await self._whole(model, "complete_with_progress", CompletionRequestBody(body),
                                 progress)

    def complete_stream(
        self, model: str, body: dict[str, Any], shown: StreamUsage
    ) -> AsyncIterator[Chunk | FinalUsage]:
        return self._stream(model, "complete_stream", CompletionRequestBody(body), shown)

    async def _whole(self, model: str, method: str, body: dict[str, Any],
                     progress: Callable[[Usage], None]) -> Reply:
        """A whole reply from the chat deployment's ``method``, which sends what the engine
        has generated so far ahead of it."""
        handle = self._routes[model].handle.options(stream=True)

        async def reply_after_progress(items: Any) -> Any:
            """The call's outcome, its progress reported on the way. A replica that dies
            first is retried by ``_first``: what its engine generated is not the client's."""
            reported = False
            try:
                outcome = await anext(items)
                while isinstance(outcome, Progress):
                    progress(outcome.usage)
                    reported = True
                    outcome = await anext(items)
            except asyncio.CancelledError:
                items.cancel()  # the request ended here first: the engine's is aborted
                raise
            except Exception:
                if reported:
                    progress(Usage(0))
                raise
            if reported and isinstance(outcome, ReplicaUnavailable):
                progress(Usage(0))
            return outcome

        _, outcome = await self._first(
            model, lambda: getattr(handle, method).remote(body), reply_after_progress)
        _raise_refusal(outcome, model)
        assert isinstance(outcome, Reply)
        return outcome

    async def _stream(
        self, model: str, method: str, body: dict[str, Any], shown: StreamUsage
    ) -> AsyncIterator[Chunk | FinalUsage]:
        handle = self._routes[model].handle.options(stream=True)
        # A rejection (full queue, dead replica, the engine's refusal) surfaces with the
        # first item.
        items, first = await self._first(
            model, lambda: getattr(handle, method).remote(body, shown), anext)
        _raise_refusal(first, model)
        ended = False
        try:
            yield first
            async for item in items:
                yield item
            ended = True
        finally:
            if not ended:
                items.cancel()  # the client's stream ended first: the engine's is aborted

    async def check_health(self) -> None:
        """The models this ingress replica holds itself must still encode."""
        for local in self._in_ingress.values():
            await local.check_health()

    async def embed(self, model: str, job: EmbeddingJob) -> Reply:
        if model in self._in_ingress:
            return _whole(await self._in_ingress[model].outcome(job), model)
        return _whole(await self._coalescers[model].submit(job), model)

    async def rerank(self, model: str, job: RerankJob) -> Reply:
        # On an embedding model, through the same coalesced calls as embeddings: the query
        # and documents join the replica's batches. A rerank model's replica batches pairs.
        if model in self._in_ingress:
            return _whole(await self._in_ingress[model].outcome(job), model)
        if self._routes[model].task == "embedding":
            return _whole(await self._coalescers[model].submit(job), model)
        handle = self._routes[model].handle
        _, outcome = await self._first(model, lambda: handle.rerank.remote(job), _resolved)
        return _whole(outcome, model)

    async def transcribe(self, model: str, job: TranscriptionJob) -> Reply:
        handle = self._routes[model].handle
        _, outcome = await self._first(model, lambda: handle.transcribe.remote(job), _resolved)
        _raise_refusal(outcome, model)
        assert isinstance(outcome, Reply)
        return outcome


def _whole(outcome: Any, model: str) -> Reply:
    if isinstance(outcome, UnexpectedFailure):  # the replica logged why
        raise RuntimeError(  # noqa: TRY004 - a failure on the replica, not a type error
            f"the model's replica failed on this request: {outcome.detail}")
    _raise_refusal(outcome, model)
    assert isinstance(outcome, Reply)
    return outcome


async def _resolved(response: Awaitable[Any]) -> Any:
    return await response
