"""One model request's books, kept the same way by every route: its quota reservation, its
metering and token metrics, and its deadline.

A route opens the books (``async with services.books(...)``), admits the request against the
project's quota, runs the model's work within the deadline, and ends with :meth:`reply` or
:meth:`stream`. However the request ends, the reservation is settled exactly once: to the
usage reported, to what the engine generated when the request ended before its reply (a client
gone, the deadline), or to nothing when the engine generated nothing (an error, a refusal).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app import metrics
from app.auth import Caller
from app.errors import timed_out
from app.quota_gate import Admission, QuotaGate
from app.sse import SSEResponse, close, relay
from app.usage_meter import UsageMeter
from messages import Chunk, FinalUsage, Reply, Usage

T = TypeVar("T")


class Accounting:
    def __init__(self, request: Request, who: Caller, model: str, user: str | None, *,
                 meter: UsageMeter, quotas: QuotaGate, timeout_s: float) -> None:
        self._request = request
        self._who = who
        self._model = model
        self._user = user
        self._meter = meter
        self._quotas = quotas
        self._deadline = time.monotonic() + timeout_s
        self._admission: Admission | None = None
        self._streaming = False
        self._done_already = False
        self._generated: Usage | None = None  # a whole reply's progress, until its reply

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if not self._streaming:  # a stream settles when it ends
            # A whole reply that ended before it came (the client left, the deadline
            # passed, the replica failed) is metered with what the engine generated for it.
            self._done(self._generated)

    async def admit(self, estimate: Callable[[], int]) -> None:
        """Reserve one request and the estimated tokens (``estimate`` is called only for a
        project with a tokens-per-minute limit); raises the contract's 429."""
        self._admission = await self._quotas.admit(self._who.project_id, estimate)

    def progress(self, usage: Usage) -> None:
        """What a whole reply has generated so far (see :meth:`__aexit__`)."""
        self._generated = usage

    async def within_deadline(self, work: Awaitable[T]) -> T:
        """``work``'s result; past the deadline it is cancelled (which aborts an engine
        request) and the client gets the contract's 503."""
        async with _deadline(self._deadline):
            return await work

    @property
    def _headers(self) -> dict[str, str]:
        return self._admission.headers if self._admission else {}

    def reply(self, reply: Reply) -> JSONResponse:
        self._done(reply.usage)
        return JSONResponse(reply.body, headers=self._headers)

    def respond(self, usage: Usage, response: Response) -> Response:
        """A whole reply already shaped (a transcript as text, SRT, ...)."""
        self._done(usage)
        response.headers.update(self._headers)
        return response

    def stream(self, first: Chunk, rest: AsyncIterator[Chunk | FinalUsage]) -> SSEResponse:
        """The rest of the request's books are the stream's: it settles when it ends."""
        self._streaming = True
        state = self._request.state

        async def on_response_end() -> None:
            # The client left before the relay's first step, so the relay never ran: what
            # the engine generated (the first chunk's usage) is metered all the same, and the
            # rest of the stream is closed, which ends the engine's request.
            if not self._done_already:
                await close(rest)
                self._done(first.usage)

        return SSEResponse(
            relay(first, rest, state.request_id, self._done, self._deadline,
                  _token_clock(self._model, state.arrived)),
            on_end=on_response_end,
            headers=self._headers,
        )

    def _done(self, usage: Usage | None) -> None:
        """Meters the request's usage (under its ``user``, if it named one) and settles its
        reservation; a request that reported no usage settles at zero tokens. Once."""
        if self._done_already:
            return
        self._done_already = True
        if usage is not None:
            who = self._who
            self._meter.record(who.project_id, who.key_id, self._model, usage, self._user,
                               _route(self._request))
            tags = {"model": self._model, "project": who.project_id}
            for counter, count in ((metrics.prompt_tokens, usage.prompt_tokens),
                                   (metrics.completion_tokens, usage.completion_tokens)):
                if count:  # Ray's counters refuse 0
                    counter.inc(count, tags=tags)
        self._quotas.settle(self._admission, usage.total_tokens if usage else 0)


def _route(request: Request) -> str:
    """The path of the route the request matched (``/v1/responses``, not the request's
    own path with its project and ids): a bounded ledger key."""
    route = request.scope.get("route")
    return str(getattr(route, "path", ""))


def _token_clock(model: str, arrived: float) -> Callable[[], None]:
    """Observes time to first token on the first call, the gap between chunks after."""
    last: float | None = None
    tags = {"model": model}

    def tick() -> None:
        nonlocal last
        now = time.monotonic()
        if last is None:
            metrics.ttft.observe(now - arrived, tags=tags)
        else:
            metrics.itl.observe(now - last, tags=tags)
        last = now

    return tick


@asynccontextmanager
async def _deadline(when: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time()
                                      + max(0.0, when - time.monotonic())):
            yield
    except TimeoutError:
        raise timed_out() from None
