"""Usage metering: what each response's ``usage`` said, added to the ledger in batches.

Requests add to an in-memory buffer (no I/O on the request path); a background task sends
the buffer to the control plane every ``interval`` seconds. A failed send keeps the rows for
the next one, so nothing is lost while the control plane restarts. Rows are kept per project,
key, model, day, the request's ``user`` (None when it named none) and its route's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from control.deployment import ControlPlaneAPI
from control.store import today
from messages import Usage

logger = logging.getLogger("inference.usage")

Row = tuple[str, str, str, str, str | None, str]  # project, key, model, day, user, route


class UsageMeter:
    def __init__(self, control_plane: ControlPlaneAPI, interval: float = 1.0) -> None:
        self.control_plane = control_plane
        self.interval = interval
        # requests, prompt tokens, completion tokens, audio seconds
        self._buffer: dict[Row, list[float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record(self, project_id: str, key_id: str, model: str, usage: Usage,
               user: str | None = None, route: str = "") -> None:
        counts = self._buffer.setdefault(
            (project_id, key_id, model, today(), user or None, route), [0, 0, 0, 0.0])
        counts[0] += 1
        counts[1] += usage.prompt_tokens
        counts[2] += usage.completion_tokens
        counts[3] += usage.audio_seconds
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._buffer:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                logger.exception("usage flush failed; keeping the rows for the next try")

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            pending, self._buffer = self._buffer, {}
            rows = [
                {"project_id": p, "key_id": k, "model": m, "day": d, "user": u, "route": r,
                 "requests": int(c[0]), "prompt_tokens": int(c[1]),
                 "completion_tokens": int(c[2]), "audio_seconds": c[3]}
                for (p, k, m, d, u, r), c in pending.items()
            ]
            try:
                await self.control_plane.add_usage(rows)
            except BaseException:
                for row, counts in pending.items():  # put them back, merged with newer ones
                    merged = self._buffer.setdefault(row, [0, 0, 0, 0.0])
                    for i in range(4):
                        merged[i] += counts[i]
                raise

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
