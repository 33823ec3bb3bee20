"""Chat model deployment: one per chat model in the config, a vLLM engine per replica.

It owns everything about the model (loading, batching, generating, counting tokens) and
nothing about callers (docs/architecture.md). What it answers crosses the Serve handle as the
typed messages of ``messages.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from ray import serve

from deployments.builtin_models import builtin_chat_template, resolve
from deployments.config import ModelSpec
from deployments.vllm_engine import VLLMChatEngine
from launch import engine_reaper
from messages import (
    APIError,
    ChatOutcome,
    FinalUsage,
    ModelCard,
    Progress,
    ReplicaUnavailable,
    Reply,
    StreamItem,
    StreamUsage,
    Usage,
)

logger = logging.getLogger("ray.serve")

# One of the engine's two kinds of work: a chat completion or a legacy completion.
EngineWork = Callable[[dict[str, Any], StreamUsage | None, Callable[[Usage], None] | None],
                      Awaitable[Any]]

# How often a replica looks at its engine; a dead engine ends the replica at once.
ENGINE_WATCH_PERIOD_S = 0.5


@serve.deployment
class ChatDeployment:
    # Serve awaits an async constructor; the engine starts inside it.
    async def __init__(self, spec: dict[str, Any]) -> None:  # type: ignore[misc]
        self.spec = ModelSpec.model_validate(spec)
        assert self.spec.chat is not None
        settings = self.spec.chat
        if settings.chat_template is None:
            settings = settings.model_copy(
                update={"chat_template": builtin_chat_template(self.spec.source)})
        self.engine = VLLMChatEngine(resolve(self.spec.source), self.spec.id, settings)
        await self.engine.start()
        # The engine runs in child processes: if this replica is killed rather than stopped,
        # a small watcher ends them (launch/engine_reaper.py).
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

    async def describe(self) -> ModelCard:
        return ModelCard(id=self.spec.id, created=self.created, owned_by=self.spec.owned_by,
                         task="chat", context_length=self.engine.context_length)

    async def _run(self, work: EngineWork, body: dict[str, Any],
                   shown: StreamUsage | None = None,
                   progress: Callable[[Usage], None] | None = None) -> Any:
        """vLLM's result, its refusal, or :class:`ReplicaUnavailable` for a request that meets
        a dead engine, before or while it runs (the ingress retries it elsewhere)."""
        if self.engine.dead:
            return ReplicaUnavailable(self.spec.id)
        try:
            result = await work(body, shown, progress)
        except Exception:
            if self.engine.dead:
                return ReplicaUnavailable(self.spec.id)
            raise
        if isinstance(result, APIError) and self.engine.dead:
            return ReplicaUnavailable(self.spec.id)
        return result

    # Chat completions and legacy completions take the same three paths: a whole reply, a
    # whole reply preceded by its progress (what the ingress calls), and a stream. The
    # streaming methods are async generators themselves (Serve tells how to call a method
    # from its kind), and close the one they relay when they are closed: that aborts the
    # engine's request.

    async def chat(self, body: dict[str, Any],
                   progress: Callable[[Usage], None] | None = None) -> ChatOutcome:
        return await self._whole(self.engine.chat, body, progress)

    async def chat_with_progress(self, body: dict[str, Any]
                                 ) -> AsyncIterator[Progress | ChatOutcome]:
        async with aclosing(self._with_progress(self.engine.chat, body)) as items:
            async for item in items:
                yield item

    async def chat_stream(self, body: dict[str, Any], shown: StreamUsage
                          ) -> AsyncIterator[StreamItem]:
        async with aclosing(self._streamed(self.engine.chat, body, shown)) as items:
            async for item in items:
                yield item

    async def complete(self, body: dict[str, Any],
                       progress: Callable[[Usage], None] | None = None) -> ChatOutcome:
        return await self._whole(self.engine.complete, body, progress)

    async def complete_with_progress(self, body: dict[str, Any]
                                     ) -> AsyncIterator[Progress | ChatOutcome]:
        async with aclosing(self._with_progress(self.engine.complete, body)) as items:
            async for item in items:
                yield item

    async def complete_stream(self, body: dict[str, Any], shown: StreamUsage
                              ) -> AsyncIterator[StreamItem]:
        async with aclosing(self._streamed(self.engine.complete, body, shown)) as items:
            async for item in items:
                yield item

    async def _whole(self, work: EngineWork, body: dict[str, Any],
                     progress: Callable[[Usage], None] | None) -> ChatOutcome:
        result = await self._run(work, body, progress=progress)
        if isinstance(result, APIError | ReplicaUnavailable):
            return result
        if not isinstance(result, dict):
            raise TypeError("a non-streaming request produced a stream")
        return Reply(result, Usage.of(result.get("usage") or {}))

    async def _with_progress(self, work: EngineWork, body: dict[str, Any]
                             ) -> AsyncGenerator[Progress | ChatOutcome]:
        """A whole reply, preceded by what it has generated so far as the engine goes (the
        latest count whenever the ingress is ready for one): if the request ends before its
        reply, the ingress meters the last. Closing this stream aborts the engine request."""
        # The engine's counts as they come, then None once the reply is done.
        counts: asyncio.Queue[Usage | None] = asyncio.Queue()
        reply = asyncio.ensure_future(self._whole(work, body, counts.put_nowait))
        reply.add_done_callback(lambda _: counts.put_nowait(None))
        try:
            while True:
                waiting = [await counts.get()]
                while not counts.empty():  # those the ingress was not ready for: the latest
                    waiting.append(counts.get_nowait())
                if waiting[-1] is None:
                    break
                yield Progress(waiting[-1])
            yield reply.result()
        finally:
            reply.cancel()

    async def _streamed(self, work: EngineWork, body: dict[str, Any], shown: StreamUsage
                        ) -> AsyncGenerator[StreamItem]:
        # The engine reports usage on every chunk (vLLM's continuous usage stats, which it
        # computes only together with include_usage): what the client is shown of it is
        # decided when each chunk is shaped, and the ingress meters from it either way.
        body = {**body, "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        result = await self._run(work, body, shown)
        if isinstance(result, APIError | ReplicaUnavailable):
            yield result
            return
        if isinstance(result, dict):
            raise TypeError("a streaming request produced a whole reply")
        async for chunk in result:
            if isinstance(chunk, APIError):  # the engine refused it before its first chunk
                yield chunk
                return
            if chunk.usage_only and not shown.trailing:
                # Not for the client, who did not ask for it; the ingress meters it.
                assert chunk.usage is not None
                yield FinalUsage(chunk.usage)
                continue
            yield chunk

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

