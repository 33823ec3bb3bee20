"""Chat streams and reply shapes on the built-in model: usage where the client asked for it,
counted over every choice, and OpenAI's fields only."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.support.e2e import CHAT_MODEL

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]


def test_stream_usage_grows_and_ends_equal_to_the_whole_reply(client: openai.OpenAI) -> None:
    params: dict[str, Any] = {"model": CHAT_MODEL, "messages": STORY, "temperature": 0,
                              "max_tokens": 24}
    whole = client.chat.completions.create(**params)
    chunks = list(client.chat.completions.create(**params, stream=True))
    assert all(c.usage is not None for c in chunks), "every chunk carries usage"
    completions = [c.usage.completion_tokens for c in chunks if c.usage]
    assert completions == sorted(completions) and completions[-1] > completions[0]
    last = chunks[-1]
    assert last.choices and last.choices[0].finish_reason == "length"
    assert last.usage == whole.usage
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_stream_include_usage_is_openais_protocol(client: openai.OpenAI) -> None:
    params: dict[str, Any] = {"model": CHAT_MODEL, "messages": CAPITAL, "temperature": 0,
                              "max_tokens": 8}
    whole = client.chat.completions.create(**params)
    chunks = list(client.chat.completions.create(
        **params, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1]), "usage only on the trailing chunk"
    both = list(client.chat.completions.create(
        **params, stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True}))
    assert all(c.usage is not None for c in both) and both[-1].usage == whole.usage
    plain = list(client.chat.completions.create(**params, stream=True))
    assert all(c.choices for c in plain), "no trailing usage chunk unless asked"
    off = list(client.chat.completions.create(
        **params, stream=True, stream_options={"continuous_usage_stats": False}))
    assert all(c.usage is None for c in off), "per-chunk usage turned off"


def test_stream_usage_with_several_choices_counts_them_all(client: openai.OpenAI) -> None:
    """Each choice generates exactly max_tokens (ignore_eos): the last chunk's usage, and the
    trailing chunk's, count both choices, as the reply without streaming does."""
    params: dict[str, Any] = {"model": CHAT_MODEL, "messages": CAPITAL, "max_tokens": 6,
                              "n": 2, "extra_body": {"ignore_eos": True}}
    whole = client.chat.completions.create(**params)
    assert whole.usage is not None and whole.usage.completion_tokens == 12
    chunks = list(client.chat.completions.create(**params, stream=True))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    totals = [c.usage.completion_tokens for c in chunks if c.usage]
    assert totals == sorted(totals)
    trailing = list(client.chat.completions.create(
        **params, stream=True, stream_options={"include_usage": True}))[-1]
    assert trailing.usage is not None and trailing.usage.completion_tokens == 12


def test_replies_and_chunks_carry_openais_fields_only(http: httpx.Client) -> None:
    body = {"model": CHAT_MODEL, "messages": CAPITAL, "max_tokens": 4}
    top = {"id", "object", "created", "model", "choices", "usage", "system_fingerprint",
           "service_tier"}
    reply = http.post("/v1/chat/completions", json=body).json()
    assert set(reply) <= top, reply
    [choice] = reply["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["logprobs"] is None and choice["message"]["refusal"] is None
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
        frames = [line.removeprefix("data: ") for line in stream.iter_lines()
                  if line.startswith("data: {")]
    assert frames
    for frame in frames:
        chunk = json.loads(frame)
        assert set(chunk) <= top, chunk
        for streamed in chunk["choices"]:
            assert set(streamed) == {"index", "delta", "logprobs", "finish_reason"}, chunk
