"""The store's administration: the audit log of every change, keys that expire and show
their last use, project deletion, and the migration of stores made before these existed."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from control.keys import hash_secret
from control.store import Actor, Store, StoreError


def test_every_change_is_audited_newest_first_without_secrets(tmp_path: Path) -> None:
    store = Store(tmp_path)
    admin = Actor("key_admin", "10.0.0.7")
    project = store.create_project("team", actor=admin)["id"]
    store.update_project(project, rpm=5, max_concurrent=2, actor=admin)
    made = store.create_key(["GenerativeApisModelAccess"], [project], "app", actor=admin)
    store.revoke_key(made["id"], actor=admin)
    store.revoke_key(made["id"], actor=admin)  # already revoked: no change, no entry
    store.create_key(["AllProductsFullAccess"], None, "org")  # the local CLI
    store.delete_project(project, actor=admin)

    entries, more = store.audit()
    assert not more
    assert [(e["action"], e["target"]) for e in entries] == [
        ("project.delete", project),
        ("key.create", entries[1]["target"]),
        ("key.revoke", made["id"]),
        ("key.create", made["id"]),
        ("project.update:rpm,max_concurrent", project),
        ("project.create", project),
    ]
    assert entries[1]["actor_key_id"] == "local" and entries[1]["client_address"] is None
    assert {e["actor_key_id"] for e in entries if e is not entries[1]} == {"key_admin"}
    assert {e["client_address"] for e in entries if e is not entries[1]} == {"10.0.0.7"}
    assert all(isinstance(e["time"], int) and e["time"] <= time.time() for e in entries)
    text = json.dumps(entries)
    assert made["secret_key"] not in text and hash_secret(made["secret_key"]) not in text


def test_audit_pages_and_filters_by_project(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a, b = store.create_project("a")["id"], store.create_project("b")["id"]
    for _ in range(3):
        store.update_project(a, tpm=10)
    store.create_key(["GenerativeApisModelAccess"], [a, b])
    page, more = store.audit(limit=2)
    assert more and [e["action"] for e in page] == ["key.create", "project.update:tpm"]
    rest, more = store.audit(limit=10, after=page[-1]["id"])
    assert not more and [e["action"] for e in rest] == [
        "project.update:tpm", "project.update:tpm", "project.create", "project.create"]
    only_b, _ = store.audit(projects=[b])
    assert [e["action"] for e in only_b] == ["key.create", "project.create"]
    assert store.audit(projects=[]) == ([], False)


def test_a_key_reads_as_expired_from_its_expiry_on(tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.default_project_id()
    made = store.create_key(["GenerativeApisModelAccess"], [project],
                            expires_at=int(time.time()) + 2)
    assert isinstance(made["expires_at"], int)
    key = store.key_by_hash(hash_secret(made["secret_key"]))
    assert key is not None and not key.expired(time.time())
    time.sleep(max(0.0, made["expires_at"] - time.time()) + 0.05)
    key = store.key_by_hash(hash_secret(made["secret_key"]))
    assert key is not None and key.expired(time.time())  # the ingress refuses it, saying so
    listed = {k["id"]: k for k in store.list_keys()}
    assert listed[made["id"]]["expires_at"] == made["expires_at"]


def test_an_expiry_in_the_past_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(StoreError) as refused:
        store.create_key(["GenerativeApisModelAccess"], None, expires_at=int(time.time()) - 1)
    assert refused.value.param == "expires_at"


def test_last_use_is_shown_and_only_moves_forward(tmp_path: Path) -> None:
    store = Store(tmp_path)
    made = store.create_key(["GenerativeApisModelAccess"], None)
    assert made["last_used_at"] is None
    store.touch_key(made["id"], 2_000_000_000)
    store.touch_key(made["id"], 1_000_000_000)
    assert [k["last_used_at"] for k in store.list_keys()] == [2_000_000_000]


def test_deleting_a_project_revokes_keys_left_without_a_grant(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a, b = store.create_project("a")["id"], store.create_project("b")["id"]
    only_a = store.create_key(["GenerativeApisModelAccess"], [a])
    both = store.create_key(["GenerativeApisModelAccess"], [a, b])
    assert store.delete_project(a)["deleted"]
    keys = {k["id"]: k for k in store.list_keys()}
    assert keys[only_a["id"]]["revoked"] and not keys[both["id"]]["revoked"]
    assert keys[both["id"]]["projects"] == [b]
    entries, _ = store.audit()
    assert [(e["action"], e["target"]) for e in entries[:2]] == [
        ("project.delete", a), ("key.revoke", only_a["id"])]
    assert store.project(a) is None
    with pytest.raises(StoreError) as unknown:
        store.delete_project(a)
    assert unknown.value.status == 404


def test_the_default_project_cannot_be_deleted(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(StoreError) as refused:
        store.delete_project(store.default_project_id())
    assert refused.value.status == 409
    assert store.project(store.default_project_id()) is not None


def test_a_store_made_before_administration_gains_its_columns(tmp_path: Path) -> None:
    """A store from before expiry, last use, concurrency quotas and the audit log keeps its
    projects and keys, which never expire, and has an empty audit log."""
    db = sqlite3.connect(tmp_path / "control-plane.sqlite3")
    db.executescript("""
        CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL,
            is_default INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
            rpm INTEGER NOT NULL DEFAULT 0, tpm INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT, secret_hash TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL, revoked_at INTEGER);
        CREATE TABLE key_grants (key_id TEXT NOT NULL, permission_set TEXT NOT NULL,
            project_id TEXT);
        INSERT INTO projects VALUES ('p0', 'default', 1, 1, 7, 0);
        INSERT INTO api_keys VALUES ('key_old', 'old', 'h', 1, NULL);
        INSERT INTO key_grants VALUES ('key_old', 'GenerativeApisModelAccess', 'p0');
    """)
    db.close()
    store = Store(tmp_path)
    assert store.project("p0") == {"id": "p0", "name": "default", "default": True, "rpm": 7,
                                   "tpm": 0, "max_concurrent": 0}
    [old] = store.list_keys()
    assert old["expires_at"] is None and old["last_used_at"] is None
    assert store.key_by_hash("h") is not None
    assert store.audit() == ([], False)
    store.update_project("p0", max_concurrent=3)
    assert store.max_concurrent("p0") == 3
