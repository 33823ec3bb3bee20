"""Chat model deployment: one per chat model in the config, a vLLM engine per replica.

It owns everything about the model (loading, batching, generating, counting tokens) and
nothing about callers (DESIGN.md). Replies cross the Serve handle as plain data:
``{"status": int, "body": dict}`` for a whole reply or an error, and SSE frames (``str``)
for a stream, whose first item may instead be such an error dict and whose last may be
``{"usage": dict}``: the final counts, for metering, when the client did not ask for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from app.backend import replica_failed
from deployments import engine_reaper
from deployments.builtin_models import resolve
from deployments.config import ModelSpec
from deployments.vllm_engine import EngineFailure, VLLMChatEngine

# vLLM's trailing usage chunk (``"choices":[]``) is OpenAI's include_usage chunk. JSON text
# inside a string escapes its quotes, so this substring only matches that chunk.
_TRAILING_USAGE_MARK = '"choices":[]'

logger = logging.getLogger("ray.serve")

# How often a replica looks at its engine; a dead engine ends the replica at once.
ENGINE_WATCH_PERIOD_S = 0.5

# The reply for a request that reached a replica whose engine has died: the ingress retries
# it on another replica (nothing was generated), and a client sees it only if none is left.
def engine_dead_reply(model: str) -> dict[str, Any]:
    return {"status": 503, "body": replica_failed(model).body()}


def failure_reply(failure: EngineFailure) -> dict[str, Any]:
    return {
        "status": failure.status,
        "body": {
            "error": {
                "message": failure.message,
                "type": "invalid_request_error",
                "param": failure.param,
                "code": failure.code,
            }
        },
    }


@serve.deployment
class ChatDeployment:
    # Serve awaits an async constructor; the engine starts inside it.
    async def __init__(self, spec: dict[str, Any]) -> None:  # type: ignore[misc]
        self.spec = ModelSpec.model_validate(spec)
        assert self.spec.chat is not None
        self.engine = VLLMChatEngine(resolve(self.spec.source), self.spec.id, self.spec.chat)
        await self.engine.start()
        # The engine runs in child processes: if this replica is killed rather than stopped,
        # a small watcher ends them (deployments/engine_reaper.py).
        self._reaper = engine_reaper.start(engine_reaper.descendants(os.getpid()))
        self.created = int(time.time())
        self._watchdog = asyncio.get_running_loop().create_task(self._end_when_engine_dies())

    async def _end_when_engine_dies(self) -> None:
        """A dead engine makes every request fail fast, so a replica left running would draw
        traffic until its next health check. It ends its own process instead: the requests on
        it fail over (the ingress retries them elsewhere) and Serve starts a new replica at
        once. ``check_health`` reports the same death to Serve in case this loop is late."""
        while not self.engine.dead:
            await asyncio.sleep(ENGINE_WATCH_PERIOD_S)
        logger.error("The vLLM engine of %s died; ending this replica so Serve replaces it.",
                     self.spec.id)
        os._exit(1)

    async def describe(self) -> dict[str, Any]:
        return {
            "id": self.spec.id,
            "created": self.created,
            "owned_by": self.spec.owned_by,
            "task": "chat",
            "context_length": self.engine.context_length,
        }

    async def _run(self, body: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
        """``(error reply, None)`` or ``(None, vLLM's result)``. A request that meets a dead
        engine, before or while it runs, gets the engine-dead reply (the ingress retries it)."""
        if self.engine.dead:
            return engine_dead_reply(self.spec.id), None
        try:
            result = await self.engine.chat(body)
        except Exception:
            if self.engine.dead:
                return engine_dead_reply(self.spec.id), None
            raise
        if isinstance(result, EngineFailure):
            dead = self.engine.dead
            return (engine_dead_reply(self.spec.id) if dead else failure_reply(result)), None
        return None, result

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        error, result = await self._run(body)
        if error is not None:
            return error
        if not isinstance(result, dict):
            raise TypeError("a non-streaming request produced a stream")
        return {"status": 200, "body": result}

    async def chat_stream(
        self, body: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[str | dict[str, Any]]:
        # Every chunk carries cumulative usage (CONTRACT.md, "Streaming and usage"): vLLM's
        # continuous usage stats, which it only computes together with include_usage.
        body = {**body, "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        error, result = await self._run(body)
        if error is not None:
            yield error
            return
        if isinstance(result, dict):
            raise TypeError("a streaming request produced a whole reply")
        async for frame in result:
            if not include_usage and _TRAILING_USAGE_MARK in frame:
                # Not for the client, who did not ask for it; the ingress meters it.
                yield {"usage": json.loads(frame.removeprefix("data: "))["usage"]}
                continue
            yield frame

    async def running_requests(self) -> int:
        return await self.engine.running_requests()

    async def check_health(self) -> None:
        await self.engine.check_health()

    async def __del__(self) -> None:
        # Serve calls this when it removes the replica, also after a failed constructor.
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.cancel()  # a stopped engine is not a dead one
        engine = getattr(self, "engine", None)
        if engine is not None:
            await engine.stop()
        reaper = getattr(self, "_reaper", None)
        if reaper is not None:  # the engine is stopped: nothing left to watch
            reaper.terminate()
            reaper.wait()
