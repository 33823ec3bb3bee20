"""``POST /v1/completions`` at the edge: the strict field list, the defaults sent to the chat
deployment, and the same books as chat (the model double stands in for vLLM)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from app.protocol import CompletionRequest
from app.routes.completions import completion_reservation
from control.store import Store
from tests.app.test_api import assert_error
from tests.support.models_double import (
    CHAT,
    EMBED,
    ModelsDoubleForTests,
    completion_body,
)


def test_defaults_are_openai_s_for_the_legacy_route(client: TestClient,
                                                    models: ModelsDoubleForTests) -> None:
    reply = client.post("/v1/completions", json=completion_body())
    assert reply.status_code == 200, reply.text
    assert reply.json()["object"] == "text_completion"
    sent = models.sent[-1]
    assert sent["max_tokens"] == 16 and sent["temperature"] == 0.7 and sent["top_p"] == 1.0
    assert sent["prompt"] == "Once upon a time"


@pytest.mark.parametrize("prompt", [
    "a", ["a", "b"], [1, 2, 3], [[1, 2], [3]],
])
def test_every_prompt_form_is_taken(client: TestClient, models: ModelsDoubleForTests,
                                    prompt: Any) -> None:
    assert client.post("/v1/completions", json=completion_body(prompt=prompt)).status_code == 200
    assert models.sent[-1]["prompt"] == prompt


def test_null_is_absent(client: TestClient, models: ModelsDoubleForTests) -> None:
    nulls = dict.fromkeys(("max_tokens", "temperature", "top_p", "n", "stop", "stream",
                           "logprobs", "echo", "seed", "presence_penalty",
                           "frequency_penalty", "logit_bias", "user"))
    assert client.post("/v1/completions", json=completion_body(**nulls)).status_code == 200
    assert models.sent[-1]["max_tokens"] == 16


@pytest.mark.parametrize(("fields", "param"), [
    ({"suffix": "the end"}, "suffix"),
    ({"best_of": 2}, "best_of"),
    ({"ignore_eos": True}, "ignore_eos"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": ["a", ""]}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [-1]}, "prompt"),
    ({"prompt": [1, "a"]}, "prompt"),
    ({"prompt": 7}, "prompt"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"logprobs": 6}, "logprobs"),
    ({"logprobs": True}, "logprobs"),
    ({"n": 17}, "n"),
    ({"temperature": 3}, "temperature"),
    ({"echo": "yes"}, "echo"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": ""}, "stop"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"logit_bias": {"a": 1}}, "logit_bias"),
    ({"user": "u" * 257}, "user"),
])
def test_bad_fields_are_a_400_naming_them(client: TestClient, fields: dict[str, Any],
                                          param: str) -> None:
    reply = client.post("/v1/completions", json=completion_body(**fields))
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    # The field itself, or the item in it that is wrong ("prompt[0]").
    assert error["param"] == param or error["param"].startswith(param + "["), error


def test_missing_prompt_is_a_400(client: TestClient) -> None:
    reply = client.post("/v1/completions", json={"model": CHAT})
    assert_error(reply, 400, "invalid_request_error", "prompt")


def test_an_embedding_model_cannot_complete(client: TestClient) -> None:
    reply = client.post("/v1/completions", json=completion_body(model=EMBED))
    assert assert_error(reply, 400, "invalid_request_error", "model")["code"] == \
        "model_not_supported"


def test_a_stream_is_sse_under_a_project_too(client: TestClient, store: Store) -> None:
    reply = client.post(f"/{store.default_project_id()}/v1/completions",
                        json=completion_body(stream=True))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.text.rstrip().endswith("data: [DONE]")


def test_the_reservation_counts_every_prompt_s_choices() -> None:
    one = CompletionRequest.model_validate({"model": CHAT, "prompt": [1, 2, 3], "max_tokens": 10})
    assert completion_reservation(one) == 3 + 10
    several = CompletionRequest.model_validate(
        {"model": CHAT, "prompt": [[1, 2], [3]], "max_tokens": 10, "n": 2})
    assert completion_reservation(several) == 3 + 10 * 2 * 2
