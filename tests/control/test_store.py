"""The store's transactions and queries: reads never queue behind a write, lookups go by id,
listing keys is one query."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from control import store as store_module
from control.keys import hash_secret
from control.store import Store


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement the store runs from here on."""
    seen: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.set_trace_callback(seen.append)
        return db

    monkeypatch.setattr(store_module.sqlite3, "connect", traced)
    yield seen


def test_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.default_project_id()
    secret = store.create_key(["GenerativeApisModelAccess"], [project])["secret_key"]
    reads: list[Callable[[], Any]] = [
        lambda: store.key_by_hash(hash_secret(secret)),
        lambda: store.project(project),
        lambda: store.project_limits(project),
        lambda: store.list_keys(project),
        lambda: store.list_projects(),
        lambda: store.usage(project),
        lambda: store.has_keys(),
    ]
    writer = sqlite3.connect(store.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    writer.execute("UPDATE projects SET rpm = 5")
    try:
        with ThreadPoolExecutor(len(reads)) as pool:
            results = [f.result(timeout=5) for f in [pool.submit(r) for r in reads]]
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    key = results[0]
    assert key is not None and key.grants[0].project_id == project
    assert results[2] == (0, 0)  # the snapshot before the uncommitted write


def test_writes_still_take_the_lock_up_front(tmp_path: Path,
                                             statements: list[str]) -> None:
    store = Store(tmp_path)
    statements.clear()
    store.create_project("p")
    assert "BEGIN IMMEDIATE" in statements
    statements.clear()
    store.usage()
    assert "BEGIN IMMEDIATE" not in statements and "BEGIN DEFERRED" in statements


def test_project_lookups_go_by_id(tmp_path: Path, statements: list[str]) -> None:
    store = Store(tmp_path)
    project = store.create_project("team")["id"]
    store.update_project(project, rpm=3, tpm=40)
    statements.clear()
    assert store.project(project) == {"id": project, "name": "team", "default": False,
                                      "rpm": 3, "tpm": 40, "max_concurrent": 0}
    assert store.project_limits(project) == (3, 40)
    assert store.project("nope") is None and store.project_limits("nope") == (0, 0)
    selects = [s for s in statements if s.startswith("SELECT")]
    assert len(selects) == 4 and all("FROM projects WHERE id = " in s for s in selects)


def test_list_keys_is_one_query_and_filters_by_project(tmp_path: Path,
                                                       statements: list[str]) -> None:
    store = Store(tmp_path)
    a, b = store.create_project("a")["id"], store.create_project("b")["id"]
    only_a = store.create_key(["GenerativeApisModelAccess"], [a], "only-a")
    both = store.create_key(["GenerativeApisModelAccess", "GenerativeApisFullAccess"],
                            [a, b], "both")
    org = store.create_key(["AllProductsFullAccess"], None, "org")
    only_b = store.create_key(["GenerativeApisModelAccess"], [b], "only-b")
    store.revoke_key(only_b["id"])
    statements.clear()
    listed = store.list_keys()
    assert len([s for s in statements if s.startswith("SELECT")]) == 1
    # Oldest first, then by id (keys made in the same second).
    assert listed == sorted(listed, key=lambda k: (k["created_at"], k["id"]))
    by_name = {k["name"]: k for k in listed}
    assert set(by_name) == {"only-a", "both", "org", "only-b"}
    for made in (only_a, both, org, only_b):
        public = {k: v for k, v in made.items() if k != "secret_key"}
        assert by_name[made["name"]] == {**public, "revoked": made is only_b}
    assert by_name["both"]["permission_sets"] == ["GenerativeApisFullAccess",
                                                  "GenerativeApisModelAccess"]
    assert by_name["both"]["projects"] == sorted([a, b])
    assert by_name["org"]["organization"] and by_name["org"]["projects"] == []

    def ids(project: str) -> set[str]:
        return {k["id"] for k in store.list_keys(project)}

    assert ids(a) == {only_a["id"], both["id"], org["id"]}
    assert ids(b) == {both["id"], org["id"], only_b["id"]}
    assert ids("unknown") == {org["id"]}  # organisation-wide keys reach every project


def test_a_ledger_made_before_audio_was_metered_gains_audio_seconds(tmp_path: Path) -> None:
    """A store whose ledger has ``user`` but no ``audio_seconds`` keeps its rows, which
    count no audio, and meters seconds from then on."""
    Store(tmp_path)
    db = sqlite3.connect(tmp_path / "control-plane.sqlite3")
    db.execute("ALTER TABLE usage DROP COLUMN audio_seconds")
    db.execute("INSERT INTO usage (project_id, key_id, model, day, requests, prompt_tokens, "
               "completion_tokens, user) VALUES ('p', 'k', 'm', '2026-01-01', 3, 30, 9, '')")
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert [(r["requests"], r["audio_seconds"]) for r in store.usage()] == [(3, 0.0)]
    row = {"project_id": "p", "key_id": "k", "model": "m", "day": "2026-01-01",
           "requests": 1, "prompt_tokens": 0, "completion_tokens": 0, "audio_seconds": 2.5}
    store.add_usage([row, row])
    assert [(r["requests"], r["audio_seconds"]) for r in Store(tmp_path).usage()] == [(5, 5.0)]


def test_a_ledger_made_before_routes_were_metered_gains_route(tmp_path: Path) -> None:
    """A ledger without ``route`` (its primary key without it too) keeps its rows, with no
    route, and meters each route apart from then on."""
    Store(tmp_path)
    db = sqlite3.connect(tmp_path / "control-plane.sqlite3")
    db.executescript("""
        DROP TABLE usage;
        CREATE TABLE usage (project_id TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
            day TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
            user TEXT NOT NULL DEFAULT '', audio_seconds REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (project_id, key_id, model, day, user));
        INSERT INTO usage VALUES ('p', 'k', 'm', '2026-01-01', 3, 30, 9, '', 0);""")
    db.close()
    store = Store(tmp_path)
    row = {"project_id": "p", "key_id": "k", "model": "m", "day": "2026-01-01",
           "requests": 1, "prompt_tokens": 1, "completion_tokens": 1}
    store.add_usage([{**row, "route": "/v1/responses"}, {**row, "route": "/v1/responses"},
                     {**row, "route": "/v1/chat/completions"}])
    assert {r["route"]: r["requests"] for r in Store(tmp_path).usage()} == {
        None: 3, "/v1/chat/completions": 1, "/v1/responses": 2}
