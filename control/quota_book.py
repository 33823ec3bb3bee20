"""The control plane's count of per-project quotas: requests and tokens handed out per
project and calendar minute, across every ingress replica.

Ingress replicas take allowances from this book and spend them locally (app/quota_gate.py),
so a request on a limited project usually pays no round trip here. Counts live in memory: a
restarted control plane starts the minute afresh.
"""

from __future__ import annotations

import math
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
