"""The chat replica (deployments/chat.py) over an engine double: what it answers across the
handle for a reply, a stream, a refusal and a dead engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import deployments.chat as chat_module
from deployments.chat import ChatDeployment
from messages import (
    APIError,
    Chunk,
    FinalUsage,
    ModelCard,
    Progress,
    ReplicaUnavailable,
    Reply,
    StreamUsage,
    Usage,
)
from tests.support.engine_doubles import EngineDoubleForTests
from tests.support.models_double import DONE, chunk

MODEL = "org/chat:bf16"
SPEC = {"id": MODEL, "task": "chat", "source": "org/chat", "owned_by": "org",
        "chat": {"max_model_len": 1024}}
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
USAGE = {"prompt_tokens": 5, "completion_tokens": 1}
FRAMES = [chunk({"choices": [{"delta": {"content": "Hi"}}], "usage": USAGE}),
          chunk({"choices": [], "usage": USAGE}),  # the trailing usage-only chunk
          DONE]


@pytest.fixture
async def replica(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setattr(chat_module, "VLLMChatEngine", EngineDoubleForTests)
    monkeypatch.setattr(chat_module, "resolve", lambda source: f"/models/{source}")
    monkeypatch.setattr(chat_module.engine_reaper, "start", lambda pids: None)
    # The watchdog would end the process on a dead engine; here it never looks twice.
    monkeypatch.setattr(chat_module, "ENGINE_WATCH_PERIOD_S", 3600)
    cls: Any = ChatDeployment.func_or_class  # type: ignore[attr-defined]

    class Collectable(cls):  # type: ignore[misc]
        # Serve awaits the async __del__ (as the teardown below does); the garbage collector
        # would call it again, unawaited, and warn in whichever test runs then.
        def __del__(self) -> None:
            pass

    replica = Collectable.__new__(Collectable)
    await cls.__init__(replica, SPEC)  # as Serve builds it: an async constructor
    yield replica
    await cls.__del__(replica)
    assert replica.engine.stopped


def engine(replica: Any) -> EngineDoubleForTests:
    double: EngineDoubleForTests = replica.engine
    return double


async def items(replica: Any, include_usage: bool) -> list[Any]:
    shown = StreamUsage(every_chunk=not include_usage, trailing=include_usage)
    return [item async for item in replica.chat_stream(BODY, shown)]


async def test_the_engine_starts_on_the_resolved_model(replica: Any) -> None:
    assert engine(replica).started
    assert (engine(replica).model_path, engine(replica).served_name) == ("/models/org/chat",
                                                                          MODEL)


async def test_describe_gives_the_engines_context_length(replica: Any) -> None:
    card = await replica.describe()
    assert isinstance(card, ModelCard)
    assert (card.id, card.task, card.owned_by) == (MODEL, "chat", "org")
    assert card.context_length == EngineDoubleForTests.context_length


async def test_a_reply_carries_the_usage_the_engine_reported(replica: Any) -> None:
    reply = await replica.chat(BODY)
    assert isinstance(reply, Reply)
    assert reply.body == engine(replica).answer
    assert reply.usage == Usage(7, 3)


async def test_a_refusal_is_returned_as_the_engine_gave_it(replica: Any) -> None:
    refusal = APIError(400, "too long", param="messages", code="context_length_exceeded")
    engine(replica).answer = refusal
    assert await replica.chat(BODY) is refusal
    assert await items(replica, include_usage=False) == [refusal]


async def test_a_dead_engine_makes_the_request_go_elsewhere(replica: Any) -> None:
    engine(replica).dead = True
    assert await replica.chat(BODY) == ReplicaUnavailable(MODEL)
    assert await items(replica, include_usage=True) == [ReplicaUnavailable(MODEL)]
    assert engine(replica).sent == []  # nothing reached the dead engine


@pytest.mark.parametrize("death", [RuntimeError("engine core died"),
                                   APIError(500, "EngineDeadError")],
                         ids=["raises", "answers-an-error"])
async def test_an_engine_that_dies_during_the_request(replica: Any,
                                                      death: Exception) -> None:
    engine(replica).dies_while_running = death
    assert await replica.chat(BODY) == ReplicaUnavailable(MODEL)


async def test_a_failure_of_a_live_engine_is_raised(replica: Any) -> None:
    async def broken(body: dict[str, Any], shown: StreamUsage | None = None,
                     progress: Any = None) -> Any:
        raise RuntimeError("a bug")

    engine(replica).chat = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug"):
        await replica.chat(BODY)


async def test_a_stream_asks_the_engine_for_usage_on_every_chunk(replica: Any) -> None:
    engine(replica).answer = FRAMES
    await items(replica, include_usage=False)
    [sent] = engine(replica).sent
    assert sent["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert sent["messages"] == BODY["messages"]


async def test_the_usage_chunk_is_metered_not_sent_unless_asked_for(replica: Any) -> None:
    engine(replica).answer = FRAMES
    hidden = await items(replica, include_usage=False)
    assert hidden == [FRAMES[0], FinalUsage(Usage(5, 1)), DONE]
    shown = await items(replica, include_usage=True)
    assert shown == FRAMES
    assert engine(replica).shown == StreamUsage(every_chunk=False, trailing=True)
    assert all(isinstance(item, Chunk) for item in shown)


async def test_a_dead_engine_ends_the_replica(monkeypatch: pytest.MonkeyPatch,
                                              replica: Any) -> None:
    """Serve then starts a new replica at once (the watchdog of deployments/chat.py)."""
    exits: list[int] = []
    monkeypatch.setattr(chat_module.os, "_exit", exits.append)
    monkeypatch.setattr(chat_module, "ENGINE_WATCH_PERIOD_S", 0.01)
    engine(replica).dead = True
    await replica._end_when_engine_dies()
    assert exits == [1]


async def test_a_whole_reply_reports_what_it_has_generated_before_the_reply(
        replica: Any) -> None:
    engine(replica).steps = [Usage(7, 1), Usage(7, 2)]
    outcomes = replica.chat_with_progress(BODY)
    assert await anext(outcomes) == Progress(Usage(7, 1))
    engine(replica).step.set()
    assert await anext(outcomes) == Progress(Usage(7, 2))
    engine(replica).step.set()
    reply = await anext(outcomes)
    assert isinstance(reply, Reply) and reply.usage == Usage(7, 3)


async def test_closing_a_whole_replys_progress_stops_the_engine_request(replica: Any) -> None:
    engine(replica).steps = [Usage(7, 1), Usage(7, 2)]
    outcomes = replica.chat_with_progress(BODY)
    assert await anext(outcomes) == Progress(Usage(7, 1))
    await outcomes.aclose()  # the ingress has gone
    await asyncio.sleep(0)
    assert engine(replica).cancelled
