"""Protocol units: bounds and shapes refused before any engine work."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.errors import from_validation_error
from app.protocol import ChatCompletionRequest, EmbeddingRequest

MSG = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": MSG, **fields}


def refused_param(model: type[ChatCompletionRequest | EmbeddingRequest], data: dict[str, Any]
                  ) -> str | None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return from_validation_error(info.value, data).param


def test_defaults_are_the_contracts() -> None:
    req = ChatCompletionRequest.model_validate(chat())
    assert req.temperature == 0.7
    assert req.top_p == 1.0
    assert req.n == 1
    assert req.stream is False


def test_every_contract_parameter_is_accepted() -> None:
    req = ChatCompletionRequest.model_validate(
        chat(
            max_tokens=5, max_completion_tokens=5, temperature=0, top_p=0.5,
            presence_penalty=1, frequency_penalty=-1, response_format={"type": "json_object"},
            logprobs=True, top_logprobs=3, stop=["a", "b"], seed=7, stream=True,
            stream_options={"include_usage": True}, n=2, logit_bias={"42": -100}, user="u1",
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            tool_choice={"type": "function", "function": {"name": "f"}},
        )
    )
    assert req.include_usage
    assert req.n == 2


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
         "response_format.json_schema.schema"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ],
)
def test_bad_chat_fields_name_their_param(fields: dict[str, Any], param: str) -> None:
    assert refused_param(ChatCompletionRequest, chat(**fields)) == param


@pytest.mark.parametrize(
    "fields",
    [
        {"tool_choice": {"type": "function", "function": {"name": "missing"}},
         "tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "required"},
        {"top_logprobs": 2},
        {"stream_options": {"include_usage": True}},
        {"logit_bias": {"not-a-token": 1}},
    ],
)
def test_inconsistent_chat_requests_name_the_field(fields: dict[str, Any]) -> None:
    assert refused_param(ChatCompletionRequest, chat(**fields)) in fields


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": ["x"] * 2049}, "input"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": [1, 2, 3]}, "input[0]"),
        ({"model": "m", "input": "x", "extra": True}, "extra"),
    ],
)
def test_bad_embedding_fields_name_their_param(data: dict[str, Any], param: str) -> None:
    assert refused_param(EmbeddingRequest, data) == param


def test_empty_embedding_string_names_input() -> None:
    assert refused_param(EmbeddingRequest, {"model": "m", "input": ["ok", ""]}) == "input"
