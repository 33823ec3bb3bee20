"""Concurrent embedding requests for one model (rerank requests on an embedding model too),
sent to its deployment in shared calls.

Every call between Serve deployments costs milliseconds of CPU on both sides, and a replica
that is handed one sentence at a time encodes batches of one, the costliest way to run the
model (docs/performance.md, "Coalescing in the ingress"). An ingress replica therefore keeps at most
``calls_in_flight`` calls open per model: a request that finds one free goes at once (no
wait at low load); the others wait here and leave together, in one call, as soon as a call
returns. The replica's dynamic batching then sees them together.

The wait is bounded like a replica's queue: beyond ``max_waiting`` waiting requests a new one
is refused at once with the same 503 as a full replica queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from deployments.batching import call_for_each
from messages import EmbeddingOutcome, EmbeddingWork


class CallCoalescer:
    def __init__(
        self,
        send: Callable[[list[EmbeddingWork]], Awaitable[list[EmbeddingOutcome]]],
        calls_in_flight: int,
        max_waiting: int,
        max_inputs_per_call: int,
        refuse: Callable[[], Exception],
    ) -> None:
        self._send = send
        self._calls_in_flight = calls_in_flight
        self._max_waiting = max_waiting
        self._max_inputs = max_inputs_per_call
        self._refuse = refuse
        self._waiting: deque[tuple[EmbeddingWork, asyncio.Future[EmbeddingOutcome]]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, job: EmbeddingWork) -> EmbeddingOutcome:
        if self._in_flight >= self._calls_in_flight and not self._room_to_wait():
            raise self._refuse()
        done: asyncio.Future[EmbeddingOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, done))
        self._start_calls()
        # A caller that gives up (client gone, deadline) cancels only its own future: a
        # waiting request is then left out of the next call; one in flight is not waited for.
        return await done

    def _room_to_wait(self) -> bool:
        if len(self._waiting) < self._max_waiting:
            return True
        # Callers who gave up still hold places until the next call leaves: free them.
        self._waiting = deque(entry for entry in self._waiting if not entry[1].done())
        return len(self._waiting) < self._max_waiting

    def _start_calls(self) -> None:
        while self._in_flight < self._calls_in_flight:
            group = self._next_group()
            if not group:
                return
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._call(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_group(self) -> list[tuple[EmbeddingWork, asyncio.Future[EmbeddingOutcome]]]:
        """The waiting requests that go in the next call (at least one if any is waiting)."""
        group: list[tuple[EmbeddingWork, asyncio.Future[EmbeddingOutcome]]] = []
        inputs = 0
        while self._waiting:
            job, done = self._waiting[0]
            if done.done():  # its caller gave up while it waited
                self._waiting.popleft()
                continue
            size = len(job.texts)
            if group and inputs + size > self._max_inputs:
                break
            group.append(self._waiting.popleft())
            inputs += size
        return group

    async def _call(self, group: list[tuple[EmbeddingWork, asyncio.Future[EmbeddingOutcome]]]) -> None:
        try:
            await call_for_each(group, self._send)
        finally:
            self._in_flight -= 1
            self._start_calls()
