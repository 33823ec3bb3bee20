"""The ingress's middleware in the order app/api.py assembles them: every response, a 500
from a bug included, is counted with the status the client got and carries the request id."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from app import metrics
from messages import Reply
from tests.support.models_double import CHAT, ModelsDoubleForTests, chat_body


class CounterDouble:
    """Stands in for a Ray metrics counter: records the tags of every increment."""

    def __init__(self) -> None:
        self.tags: list[dict[str, str]] = []

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.tags.append(dict(tags or {}))


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> CounterDouble:
    counter = CounterDouble()
    monkeypatch.setattr(metrics, "requests", counter)
    return counter


def test_a_bug_is_counted_as_the_500_the_client_got(
        client: TestClient, models: ModelsDoubleForTests, counted: CounterDouble) -> None:
    async def broken(model: str, body: dict[str, Any]) -> Reply:
        raise RuntimeError("a bug")

    models.chat = broken  # type: ignore[method-assign]
    resp = client.post("/v1/chat/completions", json=chat_body())
    assert resp.status_code == 500 and resp.json()["error"]["type"] == "server_error"
    request_id = resp.headers["x-request-id"]
    assert request_id in resp.json()["error"]["message"]
    [tags] = counted.tags
    assert (tags["route"], tags["model"], tags["status"]) == ("chat", CHAT, "500")
    assert tags["project"]  # learned by the handler before it failed


@pytest.mark.parametrize(("method", "path", "route", "status"), [
    ("GET", "/v1/models", "models", "200"),
    ("GET", "/health", "health", "200"),
    ("GET", "/v1/nothing", "other", "404"),
    ("GET", "/v1/chat/completions", "chat", "405"),
])
def test_every_response_is_counted_with_its_status_and_carries_an_id(
        client: TestClient, counted: CounterDouble, method: str, path: str, route: str,
        status: str) -> None:
    resp = client.request(method, path)
    assert str(resp.status_code) == status
    assert resp.headers["x-request-id"].startswith("req_")
    [tags] = counted.tags
    assert (tags["route"], tags["status"]) == (route, status)


def test_an_unsafe_request_id_is_replaced(client: TestClient) -> None:
    resp = client.get("/health", headers={"x-request-id": "bad id\twith spaces"})
    assert resp.headers["x-request-id"].startswith("req_")
