"""Dynamic batching for a model replica: inputs that queue while a batch runs go together in
the next one, a busy model waits a little for a batch to fill, and an idle one starts on an
input at once.

Serve's ``serve.batch`` waits for every batch to fill, so at low load each request pays the
whole wait for nothing. Here a model that has been idle for longer than ``wait_s`` starts at
once; one that has just finished a batch (under load) waits up to ``wait_s`` for more inputs
before a batch that is not full: the inputs of the next call from an ingress are usually on
their way, and one batch of them all encodes faster than two halves (docs/performance.md,
"The embedding replica's batcher and threads").

Requests take turns: a batch takes one input from each waiting request in turn, so a request
of hundreds of inputs is encoded in slices between the batches of requests that came after
it, instead of holding them all up for its whole duration.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class ContinuousBatcher(Generic[Item, Result]):
    def __init__(self, run: Callable[[list[Item]], Awaitable[list[Result]]],
                 max_batch_size: int, wait_s: float = 0.0) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self._run = run
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        # One queue per request that is waiting, in the order they came.
        self._requests: deque[deque[tuple[Item, asyncio.Future[Result]]]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._last_batch_ended = float("-inf")

    async def submit(self, item: Item) -> Result:
        [result] = await self.submit_all([item])
        return result

    async def submit_all(self, items: list[Item]) -> list[Result]:
        """One request's items' results, computed in batches with whatever else is queued.
        A caller who gives up (cancelled) leaves its items out of any batch not started."""
        loop = asyncio.get_running_loop()
        entries = deque((item, loop.create_future()) for item in items)
        futures = [done for _, done in entries]
        if entries:
            self._requests.append(entries)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._batches())
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for done in futures:  # a failed slice fails the request: its rest is not encoded
                done.cancel()
            raise

    async def _batches(self) -> None:
        while True:
            # At least one step of the event loop: inputs submitted together (one request's
            # list, several requests in one call) join the same batch.
            await asyncio.sleep(self._wait())
            batch = self._take()
            if not batch:
                return
            try:
                await call_for_each(batch, self._run)
            finally:
                self._last_batch_ended = time.monotonic()

    def _wait(self) -> float:
        if sum(len(request) for request in self._requests) >= self.max_batch_size:
            return 0.0
        idle = time.monotonic() - self._last_batch_ended
        return 0.0 if idle > self.wait_s else self.wait_s

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """Up to ``max_batch_size`` inputs, one from each waiting request in turn."""
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        while self._requests and len(batch) < self.max_batch_size:
            request = self._requests.popleft()
            entry = request.popleft()
            if not entry[1].done():  # not given up on
                batch.append(entry)
            if request:
                self._requests.append(request)  # its next input waits for its next turn
        return batch


async def call_for_each(group: Sequence[tuple[Item, asyncio.Future[Result]]],
                        call: Callable[[list[Item]], Awaitable[list[Result]]]) -> None:
    """One call for a group of waiting callers, each with its item and its future: each
    future gets its own result, or the call's exception. A future already done (its caller
    gave up) is left alone; a call that answers for more or fewer items than it was given is
    an error for them all, never results handed to the wrong callers. Cancelled (the process
    is stopping): every future is cancelled."""
    try:
        results = await call([item for item, _ in group])
        if len(results) != len(group):
            raise RuntimeError(f"{len(group)} items gave {len(results)} results")
    except asyncio.CancelledError:
        for _, done in group:
            done.cancel()
        raise
    except Exception as exc:  # noqa: BLE001 - each caller of the group gets it
        for _, done in group:
            if not done.done():
                done.set_exception(exc)
    else:
        for (_, done), result in zip(group, results, strict=True):
            if not done.done():
                done.set_result(result)
