"""Protocol units: bounds and shapes refused before any engine work."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.errors import from_validation_error
from app.protocol import ChatCompletionRequest, EmbeddingRequest
from messages import StreamUsage

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
    assert req.stream_usage == StreamUsage(every_chunk=False, trailing=True)
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
        ({"model": "m", "input": [1, 2, 3]}, "input"),
        ({"model": "m", "input": [1, "x"]}, "input[0]"),
        ({"model": "m", "input": "x", "extra": True}, "extra"),
    ],
)
def test_bad_embedding_fields_name_their_param(data: dict[str, Any], param: str) -> None:
    assert refused_param(EmbeddingRequest, data) == param


def test_empty_embedding_string_names_input() -> None:
    assert refused_param(EmbeddingRequest, {"model": "m", "input": ["ok", ""]}) == "input"


OPTIONAL_CHAT_FIELDS = ["temperature", "top_p", "n", "stream", "logprobs", "presence_penalty",
                        "frequency_penalty", "max_tokens", "max_completion_tokens", "stop",
                        "seed", "tools", "tool_choice", "response_format", "stream_options",
                        "top_logprobs", "logit_bias", "user", "parallel_tool_calls", "store",
                        "ignore_eos"]


@pytest.mark.parametrize("field", OPTIONAL_CHAT_FIELDS)
def test_null_for_an_optional_chat_field_is_its_default(field: str) -> None:
    """The SDKs send null whenever a caller passes None."""
    assert ChatCompletionRequest.model_validate(chat(**{field: None})) == (
        ChatCompletionRequest.model_validate(chat()))


def test_null_is_absent_in_nested_objects_and_for_embeddings_too() -> None:
    named = chat(messages=[{"role": "user", "content": "hi", "name": None}])
    assert ChatCompletionRequest.model_validate(named).messages[0].name is None
    req = EmbeddingRequest.model_validate({"model": "m", "input": "x", "encoding_format": None,
                                           "dimensions": None, "user": None})
    assert req.encoding_format == "float" and req.dimensions is None


def test_null_does_not_stand_for_a_required_field_nor_hide_an_unknown_one() -> None:
    assert refused_param(ChatCompletionRequest, chat(model=None)) == "model"
    assert refused_param(ChatCompletionRequest, chat(surprise=None)) == "surprise"


def test_parallel_tool_calls_and_store_false_are_taken_store_true_is_refused() -> None:
    req = ChatCompletionRequest.model_validate(chat(parallel_tool_calls=False, store=False))
    assert req.parallel_tool_calls is False and req.store is False
    assert refused_param(ChatCompletionRequest, chat(store=True)) == "store"


@pytest.mark.parametrize("model", [ChatCompletionRequest, EmbeddingRequest])
def test_user_is_at_most_256_characters(
        model: type[ChatCompletionRequest | EmbeddingRequest]) -> None:
    base = chat() if model is ChatCompletionRequest else {"model": "m", "input": "x"}
    assert model.model_validate({**base, "user": "u" * 256}).user == "u" * 256
    assert refused_param(model, {**base, "user": "u" * 257}) == "user"


def test_token_id_input_says_why_and_what_to_send() -> None:
    data = {"model": "m", "input": [[101, 2023], [101]]}
    with pytest.raises(ValidationError) as info:
        EmbeddingRequest.model_validate(data)
    err = from_validation_error(info.value, data)
    assert err.param == "input"
    assert "token ids" in err.message and "text" in err.message
