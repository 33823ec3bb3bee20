"""Per-project quotas: the ingress gate and the API's answers (the control plane's book:
tests/control/test_quota_book.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from app.errors import APIError
from app.quota_gate import QuotaGate
from control.deployment import AsyncStore
from control.store import Store
from tests.support.models_double import CHAT, EMBED, ModelsDoubleForTests


async def test_gates_on_several_replicas_share_one_limit(tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.create_project("p")["id"]
    store.update_project(project, rpm=25)
    control_plane = AsyncStore(store)
    gates = [QuotaGate(control_plane) for _ in range(3)]  # three ingress replicas
    admitted = refused = 0
    for i in range(40):
        try:
            await gates[i % 3].admit(project, 10)
            admitted += 1
        except APIError as exc:
            assert exc.status == 429 and exc.code == "rate_limit_requests"
            refused += 1
    # Allowances are slices of what is left: a replica may be refused while another
    # still holds a slice, but together they never admit more than the limit.
    assert admitted <= 25 and refused == 40 - admitted and admitted >= 20


async def test_unlimited_projects_never_ask_the_control_plane(tmp_path: Path) -> None:
    store = Store(tmp_path)
    gate = QuotaGate(AsyncStore(store))
    project = store.default_project_id()
    assert await gate.admit(project, 10**9) is None
    assert await asyncio.gather(*(gate.admit(project, 1) for _ in range(100))) == [None] * 100


@pytest.fixture
def limited(tmp_path: Path) -> tuple[TestClient, Store, str]:
    store = Store(tmp_path)
    project = store.default_project_id()
    key = store.create_key(["GenerativeApisModelAccess"], [project])["secret_key"]
    client = TestClient(build_api(ModelsDoubleForTests(), AsyncStore(store)),
                        raise_server_exceptions=False,
                        headers={"Authorization": f"Bearer {key}"})
    return client, store, project


def test_requests_quota_headers_and_429(limited: tuple[TestClient, Store, str]) -> None:
    client, store, project = limited
    store.update_project(project, rpm=2)
    body = {"model": EMBED, "input": "hello"}
    first = client.post("/v1/embeddings", json=body)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-limit-tokens" not in first.headers
    assert client.post("/v1/embeddings", json=body).status_code == 200
    refused = client.post("/v1/embeddings", json=body)
    assert refused.status_code == 429
    err = refused.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_requests"
    assert "requests" in err["message"]
    assert int(refused.headers["retry-after"]) >= 1


def test_tokens_quota_reserves_max_tokens(limited: tuple[TestClient, Store, str]) -> None:
    client, store, project = limited
    store.update_project(project, tpm=300)
    msgs = [{"role": "user", "content": "hi"}]
    ok = client.post("/v1/chat/completions", json={"model": CHAT, "messages": msgs,
                                                   "max_tokens": 100})
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-tokens"] == "300"
    refused = client.post("/v1/chat/completions", json={"model": CHAT, "messages": msgs,
                                                        "max_tokens": 400})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_tokens"
    assert "tokens" in refused.json()["error"]["message"]


def test_cli_sets_quotas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from control.cli import main

    monkeypatch.setenv("INFERENCE_STATE_DIR", str(tmp_path))
    assert main(["projects", "create", "team", "--json"]) == 0
    project = json.loads(capsys.readouterr().out)["id"]
    assert main(["projects", "update", project, "--rpm", "60", "--tpm", "1000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rpm"] == 60
    assert main(["projects", "update", project, "--rpm", "0", "--json"]) == 0
    updated = json.loads(capsys.readouterr().out)
    assert (updated["rpm"], updated["tpm"]) == (0, 1000)
    assert main(["projects", "update", "nope", "--rpm", "1", "--json"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)


def _never(*args: object) -> int:
    raise AssertionError("the prompt estimate was computed for a project without tpm")


@pytest.mark.parametrize("rpm", [0, 100])
def test_no_prompt_estimate_without_a_tokens_limit(
        limited: tuple[TestClient, Store, str], monkeypatch: pytest.MonkeyPatch,
        rpm: int) -> None:
    client, store, project = limited
    store.update_project(project, rpm=rpm)
    monkeypatch.setattr("app.routes.chat.chat_reservation", _never)
    monkeypatch.setattr("app.routes.embeddings.estimate_tokens", _never)
    chat = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert client.post("/v1/chat/completions", json={**chat, "stream": True}).status_code == 200
    assert client.post("/v1/embeddings", json={"model": EMBED, "input": "hi"}).status_code == 200


def test_prompt_estimate_is_made_for_a_tokens_limit(
        limited: tuple[TestClient, Store, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from app.routes import chat as chat_route

    client, store, project = limited
    store.update_project(project, tpm=1000)
    calls: list[object] = []

    def counted(req: object) -> int:
        calls.append(req)
        return 10

    monkeypatch.setattr(chat_route, "chat_reservation", counted)
    chat = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}
    reply = client.post("/v1/chat/completions", json=chat)
    assert reply.status_code == 200 and len(calls) == 1
    assert reply.headers["x-ratelimit-remaining-tokens"] == "990"


async def test_gate_calls_the_estimate_only_for_a_tokens_limit(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rpm_only, tpm = store.create_project("r")["id"], store.create_project("t")["id"]
    store.update_project(rpm_only, rpm=10)
    store.update_project(tpm, tpm=100)
    gate = QuotaGate(AsyncStore(store))
    admitted = await gate.admit(rpm_only, lambda: _never())
    assert admitted is not None and admitted.reserved_tokens == 0
    admitted = await gate.admit(tpm, lambda: 40)
    assert admitted is not None and admitted.reserved_tokens == 40


async def test_requests_in_flight_are_shared_by_replicas_and_given_back_once(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.create_project("p")["id"]
    store.update_project(project, max_concurrent=2)
    control_plane = AsyncStore(store)
    gates = [QuotaGate(control_plane) for _ in range(2)]  # two ingress replicas
    first, second = await gates[0].admit(project, 1), await gates[1].admit(project, 1)
    with pytest.raises(APIError) as refused:
        await gates[0].admit(project, 1)
    assert refused.value.status == 429 and refused.value.code == "rate_limit_concurrent"
    assert refused.value.headers["Retry-After"] == "1"
    gates[1].settle(second, 0)
    gates[1].settle(second, 0)  # a second settle gives nothing back twice
    await asyncio.sleep(0.05)  # the slot is given back off the request's path
    assert control_plane.concurrency.in_flight(project) == 1
    third = await gates[0].admit(project, 1)
    with pytest.raises(APIError):
        await gates[1].admit(project, 1)
    gates[0].settle(first, 0)
    gates[0].settle(third, 0)
    await asyncio.sleep(0.05)
    assert control_plane.concurrency.in_flight(project) == 0


async def test_a_request_refused_per_minute_gives_its_slot_back(tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.create_project("p")["id"]
    store.update_project(project, rpm=1, max_concurrent=5)
    control_plane = AsyncStore(store)
    gate = QuotaGate(control_plane)
    admitted = await gate.admit(project, 1)
    with pytest.raises(APIError) as refused:
        await gate.admit(project, 1)
    assert refused.value.code == "rate_limit_requests"
    gate.settle(admitted, 0)
    await asyncio.sleep(0.05)
    assert control_plane.concurrency.in_flight(project) == 0


def test_every_kind_of_request_gives_its_slot_back(limited: tuple[TestClient, Store, str]
                                                   ) -> None:
    """With one slot, requests one after another all pass: whole replies and streams each
    give their slot back when they end."""
    client, store, project = limited
    store.update_project(project, max_concurrent=1)
    chat = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
        streamed = client.post("/v1/chat/completions", json={**chat, "stream": True})
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        assert client.post("/v1/embeddings", json={"model": EMBED, "input": "hi"}
                           ).status_code == 200
