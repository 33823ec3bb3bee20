"""The SSE relay: a model's stream to the client, metered once it ends, however it ends."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.errors import server_error, timed_out
from messages import Chunk, FinalUsage, Usage

logger = logging.getLogger("inference.api")


def event(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


DONE = "data: [DONE]\n\n"


async def relay(
    first: Chunk,
    rest: AsyncIterator[Chunk | FinalUsage],
    request_id: str,
    done: Callable[[Usage | None], None],
    deadline: float,
    tick: Callable[[], None],
) -> AsyncGenerator[str, None]:
    """The engine's SSE frames as it made them; ``done`` gets the stream's usage when it ends.

    The usage is the last a chunk reported (for a stream the client cut off: the tokens
    generated until the cut), or the final counts the replica sent apart when the client did
    not ask to see them. A failure after the first byte becomes an error event followed by
    ``[DONE]`` (docs/api.md, "Streaming and usage"), and so does the deadline passing.
    """
    usage = first.usage
    try:
        tick()
        yield first.frame
        while True:
            try:
                item = await asyncio.wait_for(anext(rest), deadline - time.monotonic())
            except StopAsyncIteration:
                break
            except TimeoutError:
                yield event(timed_out().body())
                yield DONE
                break
            if isinstance(item, FinalUsage):
                usage = item.usage
                continue
            usage = item.usage or usage
            tick()
            yield item.frame
    except Exception:
        logger.exception("stream %s failed after it started", request_id)
        yield event(server_error(request_id).body())
        yield DONE
    finally:
        done(usage)
        await close(rest)  # the model's stream ends with the client's: the engine aborts


async def close(stream: AsyncIterator[object]) -> None:
    if isinstance(stream, AsyncGenerator):
        await stream.aclose()


class SSEResponse(StreamingResponse):
    """An event stream whose frames are closed however the response ends (finished, failed,
    or cut because the client left: starlette itself leaves a cut stream's iterator open, its
    ``finally`` unrun), and then ``on_end`` is called."""

    def __init__(self, frames: AsyncGenerator[str, None],
                 on_end: Callable[[], Awaitable[None]],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=headers)
        self._frames = frames
        self._on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._frames.aclose()  # runs the relay's finally, if it had started
            await self._on_end()
