"""The vLLM seam's own decisions, without an engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from vllm.exceptions import VLLMValidationError

from deployments.config import ChatEngine
from deployments.vllm_engine import (
    _failure,
    _refuse_what_does_not_fit,
    engine_cli_args,
)


def test_context_errors_get_the_contracts_code_and_param() -> None:
    prompt = _failure(400, "This model's maximum context length is 2048 tokens.", "input_tokens")
    assert (prompt.code, prompt.param) == ("context_length_exceeded", "messages")
    completion = _failure(400, "max_tokens=5000 cannot be greater than max_model_len=2048",
                          "max_tokens")
    assert (completion.code, completion.param) == ("context_length_exceeded", "max_tokens")
    other = _failure(400, "temperature must be positive", "temperature")
    assert (other.code, other.param) == (None, "temperature")


def test_a_completion_past_the_context_is_refused_where_vllm_would_clamp_it() -> None:
    from vllm.entrypoints.openai.chat_completion import serving

    _refuse_what_does_not_fit()
    _refuse_what_does_not_fit()  # once is enough: not wrapped twice
    assert serving.get_max_tokens(2048, None, 30, {}) == 2018  # absent: up to the context
    assert serving.get_max_tokens(2048, 2018, 30, {}) == 2018
    with pytest.raises(VLLMValidationError, match="maximum context length is 2048") as refused:
        serving.get_max_tokens(2048, 2019, 30, {})
    assert _failure(400, str(refused.value), None).code == "context_length_exceeded"
    assert refused.value.parameter is None  # the messages, with max_tokens, do not fit
    with pytest.raises(VLLMValidationError) as alone:
        serving.get_max_tokens(2048, 2048, 30, {})
    assert alone.value.parameter == "max_tokens"  # max_tokens alone leaves no room


def test_a_legacy_completion_past_the_context_is_refused_too() -> None:
    from vllm.entrypoints.openai.completion import serving

    _refuse_what_does_not_fit()
    assert serving.get_max_tokens(2048, 16, 30, {}) == 16
    with pytest.raises(VLLMValidationError, match="the prompt takes 2040") as refused:
        serving.get_max_tokens(2048, 16, 2040, {})
    failure = _failure(400, str(refused.value), None, prompt_field="prompt")
    assert (failure.code, failure.param) == ("context_length_exceeded", "prompt")


def test_a_whole_reply_s_progress_is_summed_over_its_engine_requests() -> None:
    from deployments.vllm_engine import _ProgressOfReply
    from messages import Usage

    seen: list[Usage] = []
    progress = _ProgressOfReply(seen.append)
    first, second = progress.part(), progress.part()  # two prompts of one completion
    first(Usage(5, 1))
    second(Usage(7, 1))
    first(Usage(5, 3))  # cumulative: replaces the first prompt's count, not added to it
    assert seen[-1] == Usage(12, 4)


def test_engine_flags_carry_the_config() -> None:
    args = engine_cli_args("/m", "org/m:bf16", ChatEngine(max_model_len=1024,
                                                           tool_call_parser="hermes"))
    assert args[args.index("--max-model-len") + 1] == "1024"
    assert "--enable-auto-tool-choice" in args
    assert args[args.index("--generation-config") + 1] == "vllm"


async def test_an_engine_error_event_is_the_clients_error_first_and_a_failure_later() -> None:
    from deployments.openai_shape import StreamShaper
    from deployments.vllm_engine import _shaped
    from messages import APIError, StreamUsage

    error = ('data: {"error": {"message": "bad tools", "type": "BadRequestError", '
             '"param": "tools", "code": 400}}\n\n')
    chunk = 'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'

    async def frames(*items: str) -> AsyncIterator[str]:
        for item in items:
            yield item

    first = [i async for i in _shaped(frames(error, "data: [DONE]\n\n"),
                                      StreamShaper(StreamUsage()))]
    assert len(first) == 1 and isinstance(first[0], APIError)
    assert (first[0].status, first[0].param, first[0].code) == (400, "tools", None)
    later = _shaped(frames(chunk, error), StreamShaper(StreamUsage()))
    assert not isinstance(await anext(later), APIError)
    with pytest.raises(RuntimeError, match="during the stream"):
        await anext(later)


@pytest.mark.parametrize(("body", "field"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
     "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"},
     "tools"),
])
def test_a_schema_the_grammar_library_refuses_names_its_field_without_internals(
        body: dict[str, object], field: str) -> None:
    # As vLLM 0.32 with xgrammar answers a regex it cannot parse (seen on the engine).
    said = ("Failed to transform json schema into a grammar: [22:26:56] "
            "/project/cpp/json_schema_converter.cc:83: Regex parsing error at position 3: "
            "Unclosed '['")
    refused = _failure(400, said, None, body)
    assert (refused.status, refused.param) == (400, field)
    assert "Unclosed '['" in refused.message
    assert "22:26:56" not in refused.message and ".cc" not in refused.message
