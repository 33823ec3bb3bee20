"""The control plane's count of per-project quotas: requests and tokens handed out per
project and calendar minute, and requests in flight, across every ingress replica.

Ingress replicas take allowances from this book and spend them locally (app/quota_gate.py),
so a request on a limited project usually pays no round trip here. Counts live in memory: a
restarted control plane starts the minute afresh.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass


def window_now(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 60)


def seconds_to_reset(now: float | None = None) -> int:
    t = time.time() if now is None else now
    return max(1, math.ceil(60 - t % 60))


@dataclass
class Grant:
    window: int
    requests: int
    tokens: int
    left_requests: int  # what the control plane still holds after this grant
    left_tokens: int
    refused: str | None = None  # "requests" or "tokens" when nothing could be granted


class QuotaBook:
    """The control plane's count: what was handed out, per project, this minute."""

    def __init__(self) -> None:
        self._window = window_now()
        self._given: dict[str, list[int]] = {}

    def grant(self, project: str, rpm: int, tpm: int, need: tuple[int, int],
              want: tuple[int, int], now: float | None = None) -> Grant:
        window = window_now(now)
        if window != self._window:
            self._window, self._given = window, {}
        given = self._given.setdefault(project, [0, 0])
        left_r = rpm - given[0] if rpm else 2**62
        left_t = tpm - given[1] if tpm else 2**62
        if need[0] > left_r:
            return Grant(window, 0, 0, left_r, left_t, refused="requests")
        if need[1] > left_t:
            return Grant(window, 0, 0, left_r, left_t, refused="tokens")
        r = min(max(need[0], want[0]), left_r)
        t = min(max(need[1], want[1]), left_t)
        given[0] += r
        given[1] += t
        return Grant(window, r, t, left_r - r, left_t - t)


# A request holds its slot no longer than this, even if the replica that took it never gives
# it back (a replica that died): longer than any request's deadline.
LEASE_SECONDS = 900.0


class ConcurrencyBook:
    """Requests in flight per project: a slot is a lease, taken when a request is admitted and
    given back once when it ends; a lease not given back expires."""

    def __init__(self, lease_seconds: float = LEASE_SECONDS) -> None:
        self.lease_seconds = lease_seconds
        self._leases: dict[str, dict[str, float]] = {}  # project -> lease -> expiry
        self._project_of: dict[str, str] = {}

    def acquire(self, project: str, limit: int, now: float | None = None) -> str | None:
        """A lease on one of ``project``'s ``limit`` slots, or None when all are held."""
        t = time.monotonic() if now is None else now
        held = self._leases.setdefault(project, {})
        for lease in [lease for lease, expiry in held.items() if expiry <= t]:
            del held[lease]
            self._project_of.pop(lease, None)
        if len(held) >= limit:
            return None
        lease = secrets.token_hex(8)
        held[lease] = t + self.lease_seconds
        self._project_of[lease] = project
        return lease

    def release(self, lease: str) -> None:
        project = self._project_of.pop(lease, None)
        if project is not None:
            self._leases.get(project, {}).pop(lease, None)

    def in_flight(self, project: str) -> int:
        return len(self._leases.get(project, {}))
