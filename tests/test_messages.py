"""messages.py: what crosses a Serve handle survives the trip (Ray pickles with cloudpickle),
and the few behaviours the messages carry."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from ray import cloudpickle

from messages import (
    APIError,
    ChatRequestBody,
    Chunk,
    EmbeddingJob,
    FinalUsage,
    ModelCard,
    ReplicaUnavailable,
    Reply,
    UnexpectedFailure,
    Usage,
)

PICKLERS = [pytest.param(pickle, id="pickle"), pytest.param(cloudpickle, id="cloudpickle")]


def crossed(pickler: Any, value: Any) -> Any:
    return pickler.loads(pickler.dumps(value))


@pytest.mark.parametrize("pickler", PICKLERS)
def test_an_error_keeps_every_field_across_a_handle(pickler: Any) -> None:
    error = APIError(429, "quota spent", param="model", code="rate_limit_requests",
                     headers={"Retry-After": "7"})
    again = crossed(pickler, error)
    assert isinstance(again, APIError)
    assert (again.status, again.message, again.param, again.code, again.headers, again.type) \
        == (429, "quota spent", "model", "rate_limit_requests", {"Retry-After": "7"},
            "rate_limit_error")
    assert again.body() == error.body()
    assert str(again) == "quota spent"


@pytest.mark.parametrize("pickler", PICKLERS)
@pytest.mark.parametrize("message", [
    Usage(3, 4),
    Reply({"object": "list", "data": []}, Usage(2)),
    Chunk("data: {}\n\n", Usage(1, 1), usage_only=True),
    Chunk("data: [DONE]\n\n", None),
    FinalUsage(Usage(5, 6)),
    ReplicaUnavailable("org/chat:bf16"),
    UnexpectedFailure("RuntimeError('x')"),
    EmbeddingJob(["a", "b"], False, "base64", 8, -1),
    ModelCard(id="m", created=1, owned_by="o", task="embedding", context_length=256,
              dimensions=384),
], ids=lambda m: type(m).__name__)
def test_messages_cross_a_handle_unchanged(pickler: Any, message: Any) -> None:
    again = crossed(pickler, message)
    assert type(again) is type(message) and again == message


def test_usage_reads_an_openai_usage_object() -> None:
    usage = Usage.of({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})
    assert usage == Usage(5, 2) and usage.total_tokens == 7
    assert Usage.of({"prompt_tokens": 4, "completion_tokens": None}) == Usage(4, 0)
    assert Usage.of({}).total_tokens == 0  # an embedding reply has no completion


def test_an_unknown_status_is_an_invalid_request() -> None:
    assert APIError(422, "x").type == "invalid_request_error"
    assert APIError(503, "x").headers == {}


@pytest.mark.parametrize("pickler", PICKLERS)
def test_a_chat_body_shows_its_messages_and_stays_a_dict(pickler: Any) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    body = crossed(pickler, ChatRequestBody({"model": "m", "messages": messages}))
    assert isinstance(body, ChatRequestBody) and body.messages == messages
    assert dict(body) == {"model": "m", "messages": messages}
    assert ChatRequestBody({"model": "m"}).messages is None
