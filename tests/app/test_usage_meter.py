"""The request's ``user`` on the usage record: metered from chat and embeddings, read back by
``GET /v1/usage`` and ``inference usage``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from control.store import Store
from messages import Chunk, EmbeddingJob, FinalUsage, Reply, StreamUsage, Usage
from tests.support.models_double import CHAT, DONE, EMBED, ModelsDoubleForTests, chat_body, chunk

CHAT_USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
EMBED_USAGE = {"prompt_tokens": 4, "total_tokens": 4}


@pytest.fixture
def metered(models: ModelsDoubleForTests) -> ModelsDoubleForTests:
    """The test double, answering with ``usage`` as the real deployments do."""
    async def chat(model: str, body: dict[str, Any], progress: Any) -> Reply:
        models.sent.append(body)
        return Reply({"object": "chat.completion", "usage": CHAT_USAGE}, Usage.of(CHAT_USAGE))

    async def chat_stream(model: str, body: dict[str, Any], shown: StreamUsage
                          ) -> AsyncIterator[Chunk | FinalUsage]:
        models.sent.append(body)
        for done in (1, 3):
            usage = {**CHAT_USAGE, "completion_tokens": done, "total_tokens": 7 + done}
            yield chunk({"choices": [], "usage": usage})
        yield DONE

    async def embed(model: str, job: EmbeddingJob) -> Reply:
        models.sent.append(job)
        return Reply({"object": "list", "data": [], "usage": EMBED_USAGE}, Usage.of(EMBED_USAGE))

    models.chat = chat  # type: ignore[method-assign]
    models.chat_stream = chat_stream  # type: ignore[method-assign]
    models.embed = embed  # type: ignore[method-assign]
    return models


def usage_rows(client: TestClient) -> list[dict[str, Any]]:
    resp = client.get("/v1/usage")
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["data"]
    return rows


def by_model_and_user(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], list[int]]:
    return {(r["model"], r["user"]): [r["requests"], r["prompt_tokens"], r["completion_tokens"]]
            for r in rows}


def test_chat_and_embeddings_users_are_on_the_usage_report(
        client: TestClient, metered: ModelsDoubleForTests) -> None:
    assert client.post("/v1/chat/completions", json=chat_body(user="alice")).status_code == 200
    assert client.post("/v1/chat/completions",
                       json=chat_body(user="alice", stream=True)).status_code == 200
    assert client.post("/v1/embeddings",
                       json={"model": EMBED, "input": "hi", "user": "bob"}).status_code == 200
    assert metered.sent[0]["user"] == "alice"  # the engine sees it too (vLLM takes it)
    assert by_model_and_user(usage_rows(client)) == {
        (CHAT, "alice"): [2, 14, 6],  # the stream is metered at its last counts
        (EMBED, "bob"): [1, 4, 0],
    }


def test_requests_without_a_user_are_reported_with_user_null(
        client: TestClient, metered: ModelsDoubleForTests) -> None:
    assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert client.post("/v1/chat/completions", json=chat_body(user="carol")).status_code == 200
    assert client.post("/v1/embeddings", json={"model": EMBED, "input": "hi"}).status_code == 200
    rows = usage_rows(client)
    assert all("user" in r for r in rows)
    assert by_model_and_user(rows) == {
        (CHAT, None): [1, 7, 3],
        (CHAT, "carol"): [1, 7, 3],
        (EMBED, None): [1, 4, 0],
    }


def test_cli_usage_shows_the_user(client: TestClient, metered: ModelsDoubleForTests,
                                  store: Store, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from control.cli import main

    client.post("/v1/embeddings", json={"model": EMBED, "input": "hi", "user": "dave"})
    client.post("/v1/embeddings", json={"model": EMBED, "input": "hi"})
    api_rows = usage_rows(client)  # also flushes the meter into the ledger
    monkeypatch.setenv("INFERENCE_STATE_DIR", str(store.directory))
    assert main(["usage", "--json"]) == 0
    cli_rows = json.loads(capsys.readouterr().out)
    assert cli_rows == api_rows
    assert sorted((r["user"] or "") for r in cli_rows) == ["", "dave"]
    assert main(["usage"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "user" in table[0].split() and any("dave" in line for line in table[1:])


def test_ledger_keeps_one_row_per_user(tmp_path: Path) -> None:
    store = Store(tmp_path)
    row = {"project_id": "p", "key_id": "k", "model": "m", "day": "2026-01-02", "requests": 1,
           "prompt_tokens": 2, "completion_tokens": 3}
    store.add_usage([{**row, "user": "u1"}, {**row, "user": "u2"}, {**row, "user": None}, row])
    store.add_usage([{**row, "user": "u1"}])
    got = {r["user"]: (r["requests"], r["prompt_tokens"]) for r in store.usage()}
    assert got == {None: (2, 4), "u1": (2, 4), "u2": (1, 2)}


# The store as the previous version made it: no `user` on the ledger.
OLD_SCHEMA = """
CREATE TABLE projects (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, is_default INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL, rpm INTEGER NOT NULL DEFAULT 0,
    tpm INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, name TEXT, secret_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL, revoked_at INTEGER
);
CREATE TABLE key_grants (
    key_id TEXT NOT NULL REFERENCES api_keys(id), permission_set TEXT NOT NULL, project_id TEXT
);
CREATE TABLE usage (
    project_id TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL, day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, key_id, model, day)
);
INSERT INTO projects VALUES ('p-default', 'default', 1, 1, 0, 0);
INSERT INTO api_keys VALUES ('key_old', 'old', 'HASH', 1, NULL);
INSERT INTO key_grants VALUES ('key_old', 'GenerativeApisFullAccess', 'p-default');
INSERT INTO usage VALUES ('p-default', 'key_old', 'm', '2026-01-01', 5, 50, 20);
"""


def test_a_store_made_before_users_were_metered_keeps_working(tmp_path: Path) -> None:
    import sqlite3

    from control.keys import hash_secret

    secret = "sk-old-secret"
    db = sqlite3.connect(tmp_path / "control-plane.sqlite3")
    db.executescript(OLD_SCHEMA.replace("'HASH'", f"'{hash_secret(secret)}'"))
    db.close()

    store = Store(tmp_path)
    assert store.default_project_id() == "p-default"
    key = store.key_by_hash(hash_secret(secret))
    assert key is not None and key.id == "key_old"
    assert store.usage() == [{"project_id": "p-default", "key_id": "key_old", "model": "m",
                              "day": "2026-01-01", "user": None, "requests": 5,
                              "prompt_tokens": 50, "completion_tokens": 20,
                              "audio_seconds": 0.0, "route": None}]
    row = {"project_id": "p-default", "key_id": "key_old", "model": "m", "day": "2026-01-01",
           "requests": 1, "prompt_tokens": 1, "completion_tokens": 1}
    store.add_usage([row, {**row, "user": "erin"}])  # same key, model and day: two users
    again = Store(tmp_path)  # opening a migrated store changes nothing
    assert {r["user"]: r["requests"] for r in again.usage()} == {None: 6, "erin": 1}


def test_each_route_is_its_own_ledger_row(client: TestClient, store: Store,
                                          metered: ModelsDoubleForTests) -> None:
    project = store.default_project_id()
    assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert client.post(f"/{project}/v1/chat/completions", json=chat_body()).status_code == 200
    assert client.post("/v1/completions", json={"model": CHAT, "prompt": "x"}).status_code == 200
    assert client.post("/v1/embeddings", json={"model": EMBED, "input": "hi"}).status_code == 200
    assert {r["route"]: r["requests"] for r in usage_rows(client)} == {
        "/v1/chat/completions": 2, "/v1/completions": 1, "/v1/embeddings": 1}
