"""A catalogue of bad requests, and a seeded fuzz: a client's mistake is a 4xx naming the
field, never a 5xx (the official SDKs retry those)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support.models_double import CHAT, EMBED

MSGS = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def chat(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": CHAT, "messages": MSGS}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not DROP}


def embed(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": EMBED, "input": "hi"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not DROP}


DROP = object()
CHAT_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("no-model", chat(model=DROP), "model"),
    ("no-messages", chat(messages=DROP), "messages"),
    ("model-not-string", chat(model=5), "model"),
    ("model-empty", chat(model=""), "model"),
    ("messages-empty", chat(messages=[]), "messages"),
    ("messages-not-list", chat(messages="hi"), "messages"),
    ("role-unknown", chat(messages=[{"role": "bot", "content": "x"}]), "messages[0]"),
    ("role-missing", chat(messages=[{"content": "x"}]), "messages[0]"),
    ("content-missing", chat(messages=[{"role": "user"}]), "messages[0].content"),
    ("content-number", chat(messages=[{"role": "user", "content": 3}]), "messages[0].content"),
    ("content-image-part", chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]), "messages[0].content[0].image_url"),
    ("content-parts-empty", chat(messages=[{"role": "user", "content": []}]),
     "messages[0].content"),
    ("tool-without-id", chat(messages=[{"role": "tool", "content": "x"}]),
     "messages[0].tool_call_id"),
    ("assistant-empty", chat(messages=[{"role": "assistant"}]), "messages[0]"),
    ("message-extra-field", chat(messages=[{"role": "user", "content": "x", "foo": 1}]),
     "messages[0].foo"),
    ("temperature-high", chat(temperature=2.1), "temperature"),
    ("temperature-negative", chat(temperature=-0.1), "temperature"),
    ("temperature-string", chat(temperature="hot"), "temperature"),
    ("top-p-zero", chat(top_p=0), "top_p"),
    ("top-p-high", chat(top_p=1.5), "top_p"),
    ("presence-penalty", chat(presence_penalty=2.5), "presence_penalty"),
    ("frequency-penalty", chat(frequency_penalty=-2.5), "frequency_penalty"),
    ("n-zero", chat(n=0), "n"),
    ("n-huge", chat(n=1000), "n"),
    ("max-tokens-zero", chat(max_tokens=0), "max_tokens"),
    ("max-tokens-float", chat(max_tokens=1.5), "max_tokens"),
    ("max-completion-negative", chat(max_completion_tokens=-1), "max_completion_tokens"),
    ("max-tokens-disagree", chat(max_tokens=5, max_completion_tokens=6),
     "max_completion_tokens"),
    ("top-logprobs-high", chat(logprobs=True, top_logprobs=21), "top_logprobs"),
    ("top-logprobs-without-logprobs", chat(top_logprobs=2), "top_logprobs"),
    ("stop-five", chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("stop-empty-string", chat(stop=""), "stop"),
    ("stop-number", chat(stop=5), "stop"),
    ("seed-string", chat(seed="x"), "seed"),
    ("stream-string", chat(stream="yes"), "stream"),
    ("stream-options-without-stream", chat(stream_options={"include_usage": True}),
     "stream_options"),
    ("stream-options-unknown", chat(stream=True, stream_options={"foo": 1}),
     "stream_options.foo"),
    ("response-format-unknown", chat(response_format={"type": "xml"}), "response_format"),
    ("json-schema-without-schema", chat(response_format={
        "type": "json_schema", "json_schema": {"name": "x"}}),
     "response_format.json_schema.schema"),
    ("tools-empty", chat(tools=[]), "tools"),
    ("tool-not-function", chat(tools=[{"type": "retrieval"}]), "tools[0].type"),
    ("tool-bad-name", chat(tools=[{"type": "function", "function": {"name": "a b"}}]),
     "tools[0].function.name"),
    ("tool-choice-unknown-name", chat(tools=[TOOL], tool_choice={
        "type": "function", "function": {"name": "g"}}), "tool_choice"),
    ("tool-choice-without-tools", chat(tool_choice="required"), "tool_choice"),
    ("tool-choice-bad-string", chat(tools=[TOOL], tool_choice="always"), "tool_choice"),
    ("logit-bias-not-token", chat(logit_bias={"hello": 5}), "logit_bias"),
    ("logit-bias-out-of-range", chat(logit_bias={"5": 101}), "logit_bias.5"),
    ("unknown-field", chat(top_k=5), "top_k"),
    ("unknown-field-functions", chat(functions=[]), "functions"),
    ("user-number", chat(user=5), "user"),
]
EMBED_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("no-input", embed(input=DROP), "input"),
    ("no-model", embed(model=DROP), "model"),
    ("input-empty-string", embed(input=""), "input"),
    ("input-empty-list", embed(input=[]), "input"),
    ("input-empty-item", embed(input=["a", ""]), "input"),
    ("input-too-many", embed(input=["a"] * 2049), "input"),
    ("input-tokens", embed(input=[1, 2, 3]), "input"),
    ("input-token-lists", embed(input=[[1, 2], [3]]), "input"),
    ("input-mixed", embed(input=["a", 2]), "input[1]"),
    ("input-object", embed(input={"text": "a"}), "input"),
    ("encoding-unknown", embed(encoding_format="int8"), "encoding_format"),
    ("dimensions-zero", embed(dimensions=0), "dimensions"),
    ("dimensions-string", embed(dimensions="64"), "dimensions"),
    ("unknown-field", embed(truncate=True), "truncate"),
    ("truncate-zero", embed(truncate_prompt_tokens=0), "truncate_prompt_tokens"),
]


@pytest.mark.parametrize(("body", "param"), [(b, p) for _, b, p in CHAT_CASES],
                         ids=[c[0] for c in CHAT_CASES])
def test_bad_chat_request(client: TestClient, body: dict[str, Any], param: str | None) -> None:
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err
    assert err["message"]


@pytest.mark.parametrize(("body", "param"), [(b, p) for _, b, p in EMBED_CASES],
                         ids=[c[0] for c in EMBED_CASES])
def test_bad_embedding_request(client: TestClient, body: dict[str, Any],
                               param: str | None) -> None:
    resp = client.post("/v1/embeddings", json=body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err


def test_lone_surrogate_and_control_characters(client: TestClient) -> None:
    raw = b'{"model": "%s", "messages": [{"role": "user", "content": "a\\ud800b"}]}' % (
        CHAT.encode())
    resp = client.post("/v1/chat/completions", content=raw,
                       headers={"content-type": "application/json"})
    assert resp.status_code == 400
    controls = chat(messages=[{"role": "user", "content": "a\u0000b\u0007c\u001b"}])
    assert client.post("/v1/chat/completions", json=controls).status_code == 200


@pytest.mark.parametrize(("name", "raw"), [
    ("nested-past-the-parser", b"[" * 30_000 + b"]" * 30_000),
    ("nested-past-the-limit", b'{"model": ' + b"[" * 65 + b"]" * 65 + b"}"),
    ("integer-past-conversion", b'{"model": "m", "messages": [], "seed": 1' + b"0" * 5000 + b"}"),
])
def test_what_the_parser_cannot_take_is_a_400(client: TestClient, name: str, raw: bytes
                                              ) -> None:
    resp = client.post("/v1/chat/completions", content=raw,
                       headers={"content-type": "application/json"})
    assert resp.status_code == 400, (name, resp.text)
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_nesting_within_the_limit_is_read(client: TestClient) -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(20):
        schema = {"type": "object", "properties": {"x": schema}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    assert client.post("/v1/chat/completions", json=chat(tools=[tool])).status_code == 200


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "none", "list", "dict", "huge", "weird"]
    kind = rng.choice(kinds if depth < 3 else kinds[:5])
    if kind == "int":
        return rng.choice([0, -1, 1, 2**63, -(2**64), rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.5, -2.5, 1e308, float("1e-320"), rng.uniform(-5, 5)])
    if kind == "str":
        return rng.choice(["", "user", "text", "function", "json_schema", "\u00e9\u4e2d",
                           "x" * rng.randint(0, 50), "\u0000", "auto", "required"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "dict":
        keys = ["role", "content", "type", "name", "text", "function", "parameters", "schema",
                "json_schema", "include_usage", "tool_call_id", "arguments", "zzz"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if kind == "huge":
        return rng.choice([10**30, "y" * 2000, list(range(100))])
    return rng.choice([float("inf"), float("nan")]) if rng.random() < 0.5 else {"": []}


def mutate(rng: random.Random, base: dict[str, Any], fields: list[str]) -> bytes:
    body = json.loads(json.dumps(base))
    for _ in range(rng.randint(1, 3)):
        action = rng.random()
        field = rng.choice(fields)
        if action < 0.6:
            body[field] = random_value(rng)
        elif action < 0.8:
            body.pop(field, None)
        else:
            body[f"extra_{rng.randint(0, 9)}"] = random_value(rng)
    text = json.dumps(body, allow_nan=True)
    if rng.random() < 0.1:  # sometimes not even JSON
        text = text[: rng.randint(0, len(text))]
    return text.encode()


CHAT_FIELDS = ["model", "messages", "max_tokens", "temperature", "top_p", "n", "stop", "seed",
               "stream", "stream_options", "tools", "tool_choice", "response_format",
               "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "user"]
EMBED_FIELDS = ["model", "input", "encoding_format", "dimensions", "user"]


def test_seeded_fuzz_never_gets_a_5xx(client: TestClient) -> None:
    rng = random.Random(20261121)
    statuses: dict[int, int] = {}
    for i in range(400):
        if i % 2:
            route, raw = "/v1/embeddings", mutate(rng, embed(), EMBED_FIELDS)
        else:
            route, raw = "/v1/chat/completions", mutate(rng, chat(), CHAT_FIELDS)
        resp = client.post(route, content=raw, headers={"content-type": "application/json"})
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        assert resp.status_code < 500, (raw, resp.text)
        if resp.status_code >= 400:
            assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert statuses.get(400, 0) > 200  # the fuzz mostly produced bad requests
