"""deployments/openai_shape.py: vLLM's replies and chunks in OpenAI's shape, with usage where
the client asked for it and summed over every choice."""

from __future__ import annotations

import json
from typing import Any

from deployments.openai_shape import Framing, StreamShaper, engine_error, reply
from messages import StreamUsage, Usage

DEFAULT = StreamUsage()  # usage on every chunk
OPENAI = StreamUsage(every_chunk=False, trailing=True)  # include_usage


def frame(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def token(index: int, text: str, prompt: int, completion: int, **choice: Any) -> str:
    """A chunk as vLLM writes it with continuous usage: usage counts the chunk's own choice."""
    return frame({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                  "prompt_token_ids": None,
                  "choices": [{"index": index, "delta": {"content": text}, "logprobs": None,
                               "finish_reason": None, "token_ids": None, **choice}],
                  "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                            "total_tokens": prompt + completion}})


def trailing(prompt: int, completion: int) -> str:
    return frame({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                  "choices": [], "usage": {"prompt_tokens": prompt,
                                           "completion_tokens": completion,
                                           "total_tokens": prompt + completion}})


def shown(chunk_frame: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(chunk_frame.removeprefix("data: "))
    return data


def test_usage_on_every_chunk_is_cumulative_over_all_choices() -> None:
    shaper = StreamShaper(DEFAULT)
    frames = [token(0, "a", 5, 1), token(1, "b", 5, 1), token(0, "c", 5, 2), token(1, "d", 5, 2)]
    chunks = [shaper.chunk(f) for f in frames]
    assert [c.usage for c in chunks] == [Usage(5, 1), Usage(5, 2), Usage(5, 3), Usage(5, 4)]
    assert shown(chunks[-1].frame)["usage"] == {"prompt_tokens": 5, "completion_tokens": 4,
                                                "total_tokens": 9}
    final = shaper.chunk(trailing(5, 4))
    assert (final.usage, final.usage_only) == (Usage(5, 4), True)


def test_include_usage_is_openais_protocol_null_until_the_trailing_chunk() -> None:
    shaper = StreamShaper(OPENAI)
    chunk = shaper.chunk(token(0, "a", 5, 1))
    assert shown(chunk.frame)["usage"] is None
    assert chunk.usage == Usage(5, 1)  # metered all the same, should the client leave now
    final = shaper.chunk(trailing(5, 1))
    assert shown(final.frame)["usage"]["total_tokens"] == 6 and final.usage_only


def test_continuous_usage_stats_off_leaves_usage_out() -> None:
    shaper = StreamShaper(StreamUsage(every_chunk=False, trailing=False))
    chunk = shaper.chunk(token(0, "a", 5, 1))
    assert "usage" not in shown(chunk.frame) and chunk.usage == Usage(5, 1)


def test_both_on_shows_usage_on_every_chunk_and_the_trailing_one() -> None:
    shaper = StreamShaper(StreamUsage(every_chunk=True, trailing=True))
    assert shown(shaper.chunk(token(0, "a", 5, 1)).frame)["usage"]["completion_tokens"] == 1


def test_chunks_carry_openais_fields_only() -> None:
    chunk = StreamShaper(DEFAULT).chunk(token(0, "a", 5, 1, stop_reason=None))
    data = shown(chunk.frame)
    assert "prompt_token_ids" not in data
    [choice] = data["choices"]
    assert set(choice) == {"index", "delta", "logprobs", "finish_reason"}


def test_a_continuation_tool_call_delta_leaves_out_what_it_does_not_carry() -> None:
    call = {"index": 0, "id": None, "type": None,
            "function": {"name": None, "arguments": "{\"ci"}}
    chunk = StreamShaper(DEFAULT).chunk(token(0, "", 5, 1) .replace(
        '"delta": {"content": ""}', '"delta": {"tool_calls": [' + json.dumps(call) + "]}"))
    [sent] = shown(chunk.frame)["choices"][0]["delta"]["tool_calls"]
    assert sent == {"index": 0, "function": {"arguments": "{\"ci"}}


def test_done_passes_as_it_is_and_an_engine_error_event_is_recognised() -> None:
    shaper = StreamShaper(DEFAULT)
    assert shaper.chunk("data: [DONE]\n\n").frame == "data: [DONE]\n\n"
    error = frame({"error": {"message": "bad", "type": "BadRequestError", "param": "tools",
                             "code": 400}})
    assert engine_error(error) == (400, "bad", "tools")
    assert engine_error(token(0, "a", 5, 1)) is None
    assert engine_error("data: [DONE]\n\n") is None


def test_text_goes_out_as_it_is_not_escaped() -> None:
    chunk = StreamShaper(DEFAULT).chunk(token(0, "été", 5, 1))
    assert '"content":"été"' in chunk.frame


def test_a_reply_has_openais_required_fields_and_none_of_the_engines() -> None:
    body = reply({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "prompt_logprobs": None, "prompt_token_ids": None, "kv_transfer_params": None,
        "ec_transfer_params": None, "metrics": None,
        "choices": [{"index": 0, "finish_reason": "stop", "stop_reason": None,
                     "token_ids": None, "routed_experts": None,
                     "message": {"role": "assistant", "content": "Paris", "tool_calls": [],
                                 "reasoning": None}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    })
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    [choice] = body["choices"]
    assert set(choice) == {"index", "finish_reason", "logprobs", "message"}
    assert choice["message"] == {"role": "assistant", "content": "Paris", "refusal": None}


FORCED_REQUIRED = Framing(hidden_prompt_tokens=10, finish_reason_of_stop="tool_calls")


def test_a_forced_calls_opening_is_taken_out_of_a_streams_usage_and_its_finish_named() -> None:
    shaper = StreamShaper(DEFAULT, FORCED_REQUIRED)
    first = shaper.chunk(token(0, "{", 49, 1))
    last = shaper.chunk(token(0, "}", 49, 6, finish_reason="stop"))
    final = shaper.chunk(trailing(49, 6))
    assert shown(first.frame)["usage"]["prompt_tokens"] == 39
    assert shown(last.frame)["choices"][0]["finish_reason"] == "tool_calls"
    assert final.usage == Usage(39, 6) and shown(final.frame)["usage"]["total_tokens"] == 45


def test_a_forced_calls_reply_bills_the_clients_prompt_and_has_content_null() -> None:
    body = reply({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {
            "role": "assistant", "content": "", "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Par'}}]}}],
        "usage": {"prompt_tokens": 49, "completion_tokens": 4, "total_tokens": 53},
    }, FORCED_REQUIRED)
    assert body["usage"] == {"prompt_tokens": 39, "completion_tokens": 4, "total_tokens": 43}
    [choice] = body["choices"]
    assert choice["finish_reason"] == "length"  # cut: the partial call, said so
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"city":"Par'


def test_a_legacy_completion_stream_sums_the_prompts_of_its_prompts() -> None:
    """Two prompts, two choices each: choices 0-1 are the first prompt's (4 tokens), 2-3 the
    second's (6 tokens); usage is the whole request's, as it is billed."""
    shaper = StreamShaper(DEFAULT, choices_per_prompt=2)
    for index, prompt in ((0, 4), (1, 4), (2, 6), (3, 6)):
        last = shaper.chunk(frame({
            "id": "c", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": index, "text": "x", "logprobs": None, "finish_reason": None,
                         "prompt_token_ids": [1] * prompt, "stop_reason": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 1,
                      "total_tokens": prompt + 1}}))
    assert last.usage == Usage(10, 4)
    choice = shown(last.frame)["choices"][0]
    assert "prompt_token_ids" not in choice and "stop_reason" not in choice
    assert choice["text"] == "x"
