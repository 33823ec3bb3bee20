"""app/sse.py: the relay of a model's stream to the client. Its usage is the last a chunk
reported or the final counts sent apart; a failure mid-stream is an error event and [DONE];
``done`` is called once, however the stream ends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from app.sse import DONE as DONE_FRAME
from app.sse import relay
from messages import Chunk, FinalUsage, Usage
from tests.support.models_double import DONE, chunk


def token(n: int, usage: tuple[int, int] | None = None) -> Chunk:
    payload: dict[str, object] = {"choices": [{"delta": {"content": str(n)}}]}
    if usage is not None:
        payload["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
    return chunk(payload)


async def items(*items: Chunk | FinalUsage | Exception) -> AsyncIterator[Chunk | FinalUsage]:
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield item


class Ended:
    """The ``done`` callback: records every call."""

    def __init__(self) -> None:
        self.calls: list[Usage | None] = []

    def __call__(self, usage: Usage | None) -> None:
        self.calls.append(usage)


async def relayed(first: Chunk, rest: AsyncIterator[Chunk | FinalUsage], done: Ended,
                  seconds: float = 60) -> list[str]:
    stream = relay(first, rest, "req_1", done, time.monotonic() + seconds, lambda: None)
    return [frame async for frame in stream]


def error_of(frame: str) -> dict[str, object]:
    error: dict[str, object] = json.loads(frame.removeprefix("data: "))["error"]
    return error


async def test_frames_pass_as_made_and_usage_is_the_last_reported() -> None:
    done = Ended()
    first, later = token(0, (5, 1)), token(1, (5, 2))
    frames = await relayed(first, items(later, token(2), DONE), done)
    assert frames == [first.frame, later.frame, token(2).frame, DONE.frame]
    assert done.calls == [Usage(5, 2)]  # a chunk without usage does not erase it


async def test_final_usage_wins_and_is_not_sent() -> None:
    done = Ended()
    frames = await relayed(token(0, (5, 1)), items(token(1, (5, 2)), FinalUsage(Usage(5, 9)),
                                                   DONE), done)
    assert len(frames) == 3 and frames[-1] == DONE.frame
    assert done.calls == [Usage(5, 9)]


async def test_a_failure_mid_stream_is_an_error_event_then_done() -> None:
    done = Ended()
    frames = await relayed(token(0, (5, 1)), items(token(1, (5, 2)), RuntimeError("died")),
                           done)
    assert frames[:2] == [token(0, (5, 1)).frame, token(1, (5, 2)).frame]
    assert error_of(frames[2])["type"] == "server_error"
    assert "req_1" in str(error_of(frames[2])["message"])
    assert frames[3:] == [DONE_FRAME]
    assert done.calls == [Usage(5, 2)]  # what was generated until the failure


async def test_the_deadline_is_an_error_event_then_done() -> None:
    async def stalled() -> AsyncIterator[Chunk | FinalUsage]:
        await asyncio.Event().wait()  # never set
        yield DONE

    done = Ended()
    frames = await relayed(token(0, (5, 1)), stalled(), done, seconds=0.05)
    assert error_of(frames[1])["code"] == "request_timeout"
    assert frames[2:] == [DONE_FRAME]
    assert done.calls == [Usage(5, 1)]


@pytest.mark.parametrize("read", [1, 2])
async def test_done_is_called_once_when_the_client_leaves(read: int) -> None:
    done = Ended()
    stream = relay(token(0, (5, 1)), items(token(1, (5, 2)), DONE), "req_1", done,
                   time.monotonic() + 60, lambda: None)
    for _ in range(read):
        await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert done.calls == [Usage(5, read)]
