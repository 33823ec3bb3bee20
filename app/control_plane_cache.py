"""What an ingress replica reads from the control plane (a key by its hash, a project's
limits), cached: a value is served at most ``ttl`` seconds after it was fetched, which is the
contract's bound on how long a revoked key or an old limit still counts (docs/api.md).

A value that callers keep reading is fetched again in the background before it is that old
(once it is half a ttl old, each fetch given a quarter ttl), so a steady client does not wait
on the control plane: without that, a client sending a request every few seconds (a chat at
one stream) found its key and its project's limits expired at every request and paid a call
to the control plane replica for each, in sequence, before its first token
(docs/performance.md, "Chat's first token"). A value nobody read for
``keep_warm_s`` is left to expire; the next read fetches it on the request's path, as a miss
always does.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)

# A value read within this long is kept fresh in the background.
KEEP_WARM_SECONDS = 60.0
# At most this many values are kept fresh, the most recently read first: about one call to
# the control plane each per half ttl, per cache and ingress replica.
MAX_KEPT_WARM = 64
# Past this many values the cache starts over (unknown keys must not grow it without bound).
MAX_ENTRIES = 10_000


@dataclass
class _Entry(Generic[V]):
    value: V
    fetched: float  # monotonic time the fetch started: the value is at least this fresh
    read: float     # monotonic time of the last read


class ControlPlaneCache(Generic[K, V]):
    """``fetch(key)``'s values, none served older than ``ttl`` seconds. Only values for which
    ``worth_keeping(value)`` holds are kept fresh (an unknown key's None is not). A ttl of 0
    or less caches nothing."""

    def __init__(self, fetch: Callable[[K], Awaitable[V]], ttl: float,
                 worth_keeping: Callable[[V], bool] = lambda _: True,
                 keep_warm_s: float = KEEP_WARM_SECONDS, max_kept_warm: int = MAX_KEPT_WARM,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self._worth_keeping = worth_keeping
        self._keep_warm_s = keep_warm_s
        self._max_kept_warm = max_kept_warm
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        # The refresh's timer and fetches, on the event loop that armed them.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._refreshing: dict[K, asyncio.Task[None]] = {}

    async def get(self, key: K) -> V:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry.fetched < self.ttl:
            entry.read = now
        else:
            entry = await self._fetched(key, now)
        self._keep_fresh()
        return entry.value

    def latest(self, key: K) -> V | None:
        """The last value fetched for ``key``, however old; None if none was."""
        entry = self._entries.get(key)
        return None if entry is None else entry.value

    def close(self) -> None:
        """Stop refreshing (the replica is stopping); reads still work, fetching on a miss."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._refreshing.values():
            task.cancel()
        self._refreshing.clear()
        self._loop = None

    async def _fetched(self, key: K, read: float) -> _Entry[V]:
        started = self._clock()
        value = await self._fetch(key)
        if len(self._entries) >= MAX_ENTRIES and key not in self._entries:
            self._entries.clear()
        entry = _Entry(value, started, read)
        current = self._entries.get(key)
        if current is None or current.fetched <= started:  # a later fetch may have landed
            if current is not None:  # reads made while this fetch ran still count
                entry.read = max(entry.read, current.read)
            self._entries[key] = entry
        return entry

    def _keep_fresh(self) -> None:
        """Arm the refresh, a quarter ttl from now, unless it is armed. A timer, not a task
        that sleeps: an event loop that closes meanwhile (a test's) drops it quietly, and the
        next read on another loop arms it there."""
        if self.ttl <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first read, or the loop that armed it is gone
            self.close()
            self._loop = loop
        if self._timer is None:
            self._timer = loop.call_later(self.ttl / 4, self._refresh_due)

    def _refresh_due(self) -> None:
        """Every quarter ttl while anything is read: fetch again, each in a task of its own,
        the values read lately that are half a ttl old, so none is ever read expired."""
        self._timer = None
        assert self._loop is not None
        now = self._clock()
        warm = heapq.nlargest(
            self._max_kept_warm,
            ((e.read, k) for k, e in self._entries.items()
             if now - e.read < self._keep_warm_s and self._worth_keeping(e.value)),
            key=lambda pair: pair[0])
        if not warm:
            return  # nothing read lately: the next read arms it again
        for _, key in warm:
            if key not in self._refreshing and now - self._entries[key].fetched >= self.ttl / 2:
                # In a context of its own: the refresh belongs to no request.
                task = self._loop.create_task(self._refresh(key), context=contextvars.Context())
                self._refreshing[key] = task
                task.add_done_callback(self._refreshed(key))
        self._timer = self._loop.call_later(self.ttl / 4, self._refresh_due)

    def _refreshed(self, key: K) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if self._refreshing.get(key) is task:
                del self._refreshing[key]
        return done

    async def _refresh(self, key: K) -> None:
        entry = self._entries.get(key)
        try:
            # A slow answer is not waited for past a quarter ttl: the value would expire.
            await asyncio.wait_for(self._fetched(key, entry.read if entry else self._clock()),
                                   self.ttl / 4)
        except Exception:  # the value expires; the next read fetches it and fails there
            log.debug("could not refresh a cached control-plane value", exc_info=True)
