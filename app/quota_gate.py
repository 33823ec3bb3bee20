"""Per-project quotas: requests and tokens per minute, and requests in flight, across every
ingress replica.

The control plane owns the count for each project and minute (control/quota_book.py). An ingress
replica does not ask it on every request: it takes an allowance (a slice of what is left this
minute) and spends it locally (:class:`QuotaGate`), going back only when the allowance runs
out, so a request on a limited project usually pays no round trip and one on an unlimited
project never does. Tokens are reserved at admission (prompt estimate + ``max_tokens``) and
corrected to the response's actual usage afterwards. Windows are calendar minutes; counts
live in memory: a restarted control plane starts the minute afresh.

Requests in flight (``max_concurrent``) cannot be sliced into allowances: a request on a
project with that limit takes a slot from the control plane when it is admitted and gives it
back once when it ends (a stream when it ends), a round trip each way.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from app.control_plane_cache import ControlPlaneCache
from app.errors import APIError
from control.quota_book import Grant, seconds_to_reset, window_now

# Tokens reserved for the completion when a request does not say max_tokens.
DEFAULT_COMPLETION_RESERVE = 256
# An allowance is this share of the limit (or what is left, if less).
ALLOWANCE_SHARE = 0.1
LIMITS_CACHE_SECONDS = 2.0
# When every slot is held, a client may retry this soon: requests end at any moment.
CONCURRENCY_RETRY_AFTER_SECONDS = 1


class QuotaAPI(Protocol):
    async def project_limits(self, project_id: str) -> tuple[int, int]: ...

    async def quota_grant(self, project_id: str, need: tuple[int, int],
                          want: tuple[int, int]) -> Grant: ...

    async def max_concurrent(self, project_id: str) -> int: ...

    async def concurrency_acquire(self, project_id: str, limit: int) -> str | None: ...

    async def concurrency_release(self, lease: str) -> None: ...


@dataclass
class Allowance:
    window: int = -1
    requests: int = 0
    tokens: int = 0
    left_requests: int = 0
    left_tokens: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Admission:
    """One admitted request: its reservation and the headers it answers with."""

    project: str
    window: int
    reserved_tokens: int
    headers: dict[str, str]
    settled: bool = False
    lease: str | None = None  # the request's slot, on a project with max_concurrent


def estimate_tokens(text_chars: int) -> int:
    """A prompt's tokens before tokenisation (about 4 characters a token, rounded up)."""
    return math.ceil(text_chars / 4)


class QuotaGate:
    """The ingress side: admits against a local allowance, settles to actual usage."""

    def __init__(self, control_plane: QuotaAPI) -> None:
        self.control_plane = control_plane
        # A project's (requests, tokens) per minute and its requests in flight (0: no limit).
        self._limits: ControlPlaneCache[str, tuple[int, int]] = ControlPlaneCache(
            control_plane.project_limits, LIMITS_CACHE_SECONDS)
        self._allowances: dict[str, Allowance] = {}
        self._max_concurrent: ControlPlaneCache[str, int] = ControlPlaneCache(
            control_plane.max_concurrent, LIMITS_CACHE_SECONDS)
        self._releases: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        """Stop refreshing cached limits (the replica is stopping)."""
        self._limits.close()
        self._max_concurrent.close()

    async def limits(self, project: str) -> tuple[int, int]:
        return await self._limits.get(project)

    async def concurrency_limit(self, project: str) -> int:
        return await self._max_concurrent.get(project)

    async def admit(self, project: str, tokens: int | Callable[[], int]) -> Admission | None:
        """Take a slot, reserve one request and ``tokens``; None when the project has no
        limits. ``tokens`` may be a function that estimates them: it is called only when the
        project has a tokens-per-minute limit. Raises the contract's 429 when the project's
        slots are all held or the minute's quota is spent."""
        limit = await self.concurrency_limit(project)
        lease = None
        if limit:
            lease = await self.control_plane.concurrency_acquire(project, limit)
            if lease is None:
                raise _too_many_in_flight(limit)
        try:
            admission = await self._admit(project, tokens)
        except BaseException:
            if lease is not None:
                self._release(lease)
            raise
        if lease is None:
            return admission
        if admission is None:
            return Admission(project, -1, 0, {}, lease=lease)
        admission.lease = lease
        return admission

    async def _admit(self, project: str, tokens: int | Callable[[], int]) -> Admission | None:
        rpm, tpm = await self.limits(project)
        if not rpm and not tpm:
            return None
        if not tpm:
            tokens = 0
        elif callable(tokens):
            tokens = tokens()
        allowance = self._allowances.setdefault(project, Allowance())
        async with allowance.lock:
            window = window_now()
            if allowance.window != window:
                allowance.window, allowance.requests, allowance.tokens = window, 0, 0
            need = (max(0, 1 - allowance.requests) if rpm else 0,
                    max(0, tokens - allowance.tokens) if tpm else 0)
            if need[0] or need[1]:
                want = (math.ceil(rpm * ALLOWANCE_SHARE) if rpm else 0,
                        math.ceil(tpm * ALLOWANCE_SHARE) if tpm else 0)
                grant = await self.control_plane.quota_grant(project, need, want)
                if grant.refused:
                    raise _rate_limited(grant.refused, rpm, tpm, grant)
                if grant.window == window:
                    allowance.requests += grant.requests
                    allowance.tokens += grant.tokens
                allowance.left_requests = grant.left_requests
                allowance.left_tokens = grant.left_tokens
            allowance.requests -= 1 if rpm else 0
            allowance.tokens -= tokens
            headers = _headers(rpm, tpm, allowance.left_requests + allowance.requests,
                               allowance.left_tokens + allowance.tokens)
        return Admission(project, window, tokens, headers)

    def settle(self, admission: Admission | None, actual_tokens: int) -> None:
        """Correct the reservation to what the response actually used and give back the
        request's slot (once)."""
        if admission is None or admission.settled:
            return
        admission.settled = True
        if admission.lease is not None:
            self._release(admission.lease)
        allowance = self._allowances.get(admission.project)
        if allowance is not None and allowance.window == admission.window and (
                (self._limits.latest(admission.project) or (0, 0))[1]):
            # A refund if fewer were used; a debt, paid by the next admissions, if more.
            allowance.tokens += admission.reserved_tokens - actual_tokens


    def _release(self, lease: str) -> None:
        """Give a slot back, off the caller's path (a stream's end is not awaited). The call
        runs in a context of its own, not the request's: Serve cancels the calls a request
        made when the request is cancelled (a client that leaves right after the last event),
        and the slot must come back all the same."""
        release = asyncio.get_running_loop().create_task(
            self.control_plane.concurrency_release(lease), context=contextvars.Context())
        self._releases.add(release)
        release.add_done_callback(self._releases.discard)


def _too_many_in_flight(limit: int) -> APIError:
    return APIError(
        429,
        f"This project's quota of {limit} requests in flight at once is reached; retry when "
        "one of them has ended.",
        code="rate_limit_concurrent",
        headers={"Retry-After": str(CONCURRENCY_RETRY_AFTER_SECONDS),
                 "x-ratelimit-limit-concurrent": str(limit)},
    )


def _headers(rpm: int, tpm: int, left_requests: int, left_tokens: int) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the limits a project has."""
    reset = f"{seconds_to_reset()}s"
    headers: dict[str, str] = {}
    for kind, limit, left in (("requests", rpm, left_requests), ("tokens", tpm, left_tokens)):
        if limit:
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, left))
            headers[f"x-ratelimit-reset-{kind}"] = reset
    return headers


def _rate_limited(which: str, rpm: int, tpm: int, grant: Grant) -> APIError:
    limit = rpm if which == "requests" else tpm
    headers = _headers(rpm, tpm, grant.left_requests, grant.left_tokens)
    reset = seconds_to_reset()
    headers["Retry-After"] = str(reset)
    return APIError(
        429,
        f"This project's {which} per minute quota ({limit}) is spent; "
        f"retry in {reset} s.",
        code=f"rate_limit_{which}",
        headers=headers,
    )

