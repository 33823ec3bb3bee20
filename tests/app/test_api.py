"""The starlette app in-process, in front of a test double of the model deployments."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from app.services import Limits
from control.deployment import AsyncStore
from control.store import Store
from messages import APIError, Chunk, FinalUsage, Reply, StreamUsage, Usage
from tests.support.models_double import (
    CHAT,
    DONE,
    EMBED,
    RERANK,
    TRANSCRIBE,
    ModelsDoubleForTests,
    chat_body,
    chunk,
)


def assert_error(resp: Any, status: int, type_: str, param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == type_
    assert err["param"] == param
    assert err["code"] is None or isinstance(err["code"], str)
    return dict(err)


def test_health_is_open(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_models_list_and_ids_with_slash_and_colon(client: TestClient) -> None:
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    assert {m["id"] for m in listed["data"]} == {CHAT, EMBED, TRANSCRIBE, RERANK}
    one = client.get(f"/v1/models/{EMBED}").json()
    assert one["id"] == EMBED and one["dimensions"] == 8 and one["task"] == "embedding"
    err = assert_error(client.get("/v1/models/no/such:model"), 404, "not_found_error", "model")
    assert err["code"] == "model_not_found"


def test_chat_sends_contract_defaults(client: TestClient, models: ModelsDoubleForTests) -> None:
    assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert models.sent[-1]["temperature"] == 0.7
    assert models.sent[-1]["top_p"] == 1.0


def test_unknown_model_is_404(client: TestClient) -> None:
    err = assert_error(
        client.post("/v1/chat/completions", json=chat_body(model="nope")),
        404, "not_found_error", "model",
    )
    assert err["code"] == "model_not_found"


def test_model_of_the_wrong_task_is_400(client: TestClient) -> None:
    assert_error(client.post("/v1/chat/completions", json=chat_body(model=EMBED)),
                 400, "invalid_request_error", "model")
    assert_error(client.post("/v1/embeddings", json={"model": CHAT, "input": "x"}),
                 400, "invalid_request_error", "model")


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"", {"content-type": "application/json"}, 400),
        (b"{not json", {"content-type": "application/json"}, 400),
        (b"[1, 2]", {"content-type": "application/json"}, 400),
        (b"\xff\xfe", {"content-type": "application/json"}, 400),
        (b"{}", {"content-type": "text/plain"}, 415),
    ],
)
def test_unreadable_bodies(client: TestClient, content: bytes, headers: dict[str, str],
                           status: int) -> None:
    resp = client.post("/v1/chat/completions", content=content, headers=headers)
    assert_error(resp, status, "invalid_request_error")


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = chat_body(user="x" * 70000)
    assert_error(client.post("/v1/chat/completions", json=big), 413, "invalid_request_error")

    def chunks() -> Any:  # no Content-Length: the limit holds while reading
        yield json.dumps(big).encode()

    resp = client.post("/v1/chat/completions", content=chunks(),
                       headers={"content-type": "application/json"})
    assert_error(resp, 413, "invalid_request_error")


def test_unknown_route_and_method_use_the_envelope(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found_error")
    assert_error(client.get("/v1/chat/completions"), 405, "invalid_request_error")


def test_stream_is_sse_and_errors_mid_stream_become_an_event(
    client: TestClient, models: ModelsDoubleForTests
) -> None:
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text.endswith("data: [DONE]\n\n")
    models.stream_fails_after = 1
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True))
    events = [e for e in resp.text.split("\n\n") if e]
    assert events[0] == 'data: {"n": 0}'
    assert json.loads(events[1].removeprefix("data: "))["error"]["type"] == "server_error"
    assert events[-1] == "data: [DONE]"


def test_engine_refusal_before_the_stream_is_a_plain_error(
    client: TestClient, models: ModelsDoubleForTests
) -> None:
    models.refusal = APIError(400, "too long", param="messages",
                              code="context_length_exceeded")
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert_error(resp, 400, "invalid_request_error", "messages")


def test_request_id_is_minted_or_echoed(client: TestClient) -> None:
    assert client.get("/health").headers["x-request-id"].startswith("req_")
    echoed = client.get("/health", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"


def test_a_bug_is_a_generic_500_with_the_request_id(
    models: ModelsDoubleForTests, client: TestClient
) -> None:
    async def broken(model: str, body: dict[str, Any]) -> Reply:
        raise RuntimeError("secret internals")

    models.chat = broken  # type: ignore[method-assign]
    resp = client.post("/v1/chat/completions", json=chat_body(), headers={"x-request-id": "r1"})
    err = assert_error(resp, 500, "server_error")
    assert "r1" in err["message"] and "secret" not in err["message"]
    assert resp.headers["x-request-id"] == "r1"


def test_deadline_is_a_503_and_a_stream_error_event(models: ModelsDoubleForTests, store: Store,
                                                     key: str) -> None:
    import asyncio

    async def slow_chat(model: str, body: dict[str, Any], progress: Any) -> Reply:
        await asyncio.Event().wait()  # never set: the model outlasts any deadline
        return Reply({}, Usage(0))

    async def slow_stream(model: str, body: dict[str, Any], shown: StreamUsage
                          ) -> AsyncIterator[Chunk | FinalUsage]:
        yield chunk({"n": 0})
        await asyncio.Event().wait()
        yield DONE

    models.chat = slow_chat  # type: ignore[method-assign]
    models.chat_stream = slow_stream  # type: ignore[method-assign]
    app = build_api(models, AsyncStore(store), limits=Limits(request_timeout_s=0.3))
    client = TestClient(app, raise_server_exceptions=False,
                        headers={"Authorization": f"Bearer {key}"})
    resp = client.post("/v1/chat/completions", json=chat_body())
    err = assert_error(resp, 503, "overloaded_error")
    assert err["code"] == "request_timeout" and resp.headers["retry-after"] == "1"
    events = [e for e in client.post("/v1/chat/completions",
                                     json=chat_body(stream=True)).text.split("\n\n") if e]
    assert json.loads(events[1].removeprefix("data: "))["error"]["code"] == "request_timeout"
    assert events[-1] == "data: [DONE]"


def test_unknown_paths_and_methods_are_answered_only_after_the_key_check(
        client: TestClient) -> None:
    anonymous = {"Authorization": ""}
    for method, path in (("GET", "/v1/nothing"), ("GET", "/v1/chat/completions"),
                         ("POST", "/nothing/at/all")):
        denied = client.request(method, path, headers=anonymous)
        assert_error(denied, 401, "authentication_error")
    assert_error(client.get("/v1/nothing"), 404, "not_found_error")


def test_a_405_says_which_methods_the_route_takes(client: TestClient) -> None:
    resp = client.get("/v1/chat/completions")
    assert_error(resp, 405, "invalid_request_error")
    assert resp.headers["allow"] == "POST"


def test_a_trailing_slash_is_no_redirect(client: TestClient) -> None:
    for path in ("/v1/models/", "/v1/chat/completions/"):
        resp = client.post(path, json=chat_body(), follow_redirects=False,
                           headers={"host": "attacker.example"})
        assert resp.status_code in (404, 405), resp.headers
        assert "location" not in resp.headers


def test_two_authorization_headers_are_a_401(client: TestClient, key: str) -> None:
    resp = client.get("/v1/models", headers=[("authorization", f"Bearer {key}"),
                                             ("authorization", "Bearer sk-other")])
    assert_error(resp, 401, "authentication_error")
