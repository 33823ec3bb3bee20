"""What a chat stream item costs to cross a Serve handle, by its type: the SSE text alone (the
items before typed messages), the slotted dataclass :class:`messages.Chunk`, and a pydantic
model of the same fields; plus the replica's one reading of each vLLM frame (its shape and
usage, deployments/openai_shape.py).

Serve pickles each item a replica's generator yields and the ingress unpickles it; the round
trip here is the same calls (pickle protocol 5, cloudpickle as Ray ships it). Instructions, not
seconds, are the stable measure on a shared machine: run under ``valgrind --tool=callgrind``
for those; the timings printed are medians of repeated runs.

    python -m bench.stream_items
"""

from __future__ import annotations

import json
import pickle
import statistics
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from ray import cloudpickle

from deployments.openai_shape import StreamShaper
from messages import Chunk, StreamUsage, Usage

# A chunk of the built-in chat model's stream as vLLM writes it (continuous usage on).
FRAME = "data: " + json.dumps({
    "id": "chatcmpl-5d3f0c8a9b2e4d17a6c1f0e2b3a4c5d6", "object": "chat.completion.chunk",
    "created": 1796417367, "model": "huggingfacetb/smollm2-135m-instruct:fp32",
    "choices": [{"index": 0, "delta": {"content": " hello"}, "logprobs": None,
                 "finish_reason": None}],
    "usage": {"prompt_tokens": 37, "total_tokens": 49, "completion_tokens": 12},
}, separators=(",", ":")) + "\n\n"


class PydanticUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class PydanticChunk(BaseModel):
    frame: str
    usage: PydanticUsage | None
    usage_only: bool = False


def per_call_us(work: Callable[[], Any], calls: int = 20_000, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def round_trip(dumps: Callable[[Any], bytes], item: Any) -> Callable[[], Any]:
    return lambda: pickle.loads(dumps(item))


def main() -> None:
    items = {
        "SSE text (str)": FRAME,
        "messages.Chunk (slotted dataclass)": Chunk(FRAME, Usage(37, 12)),
        "pydantic model": PydanticChunk(frame=FRAME, usage=PydanticUsage(
            prompt_tokens=37, completion_tokens=12)),
    }
    print(f"frame: {len(FRAME)} bytes")
    for name, item in items.items():
        size = len(pickle.dumps(item, protocol=5))
        plain = per_call_us(round_trip(lambda x: pickle.dumps(x, protocol=5), item))
        cloud = per_call_us(round_trip(lambda x: cloudpickle.dumps(x, protocol=5), item))
        print(f"{name:38s} {size:5d} B pickled  pickle {plain:6.2f} us  "
              f"cloudpickle {cloud:6.2f} us per round trip")
    shaper = StreamShaper(StreamUsage())
    parse = per_call_us(lambda: shaper.chunk(FRAME))
    print(f"{'replica: shape a frame, take its usage':38s} {parse:6.2f} us")
    mark = '"usage"'
    sniff = per_call_us(lambda: mark in FRAME)
    print(f"{'ingress before: find usage by substring':38s} {sniff:6.2f} us")


if __name__ == "__main__":
    main()
