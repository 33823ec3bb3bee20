"""The `inference` CLI: the same commands and the same --json documents on the local store
and, in remote mode, over the administration API (here the app in-process over the models'
test double, reached through starlette's test client instead of the network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from control import remote
from control.cli import main
from control.deployment import AsyncStore
from control.store import Store
from tests.support.models_double import ModelsDoubleForTests


def _run(capsys: pytest.CaptureFixture[str], *args: str, status: int = 0) -> Any:
    assert main([*args, "--json"]) == status
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def remote_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A service over its own store; the CLI's HTTP client reaches it in-process."""
    store = Store(tmp_path / "service")
    app = build_api(ModelsDoubleForTests(), AsyncStore(store))

    def client(base_url: str, timeout: float, headers: dict[str, str]) -> TestClient:
        return TestClient(app, base_url=base_url, headers=headers)

    monkeypatch.setattr(remote.httpx, "Client", client)
    operator = store.create_key(["AllProductsFullAccess"], None, "operator")
    monkeypatch.setenv("INFERENCE_BASE_URL", "http://service.test/v1")
    monkeypatch.setenv("INFERENCE_API_KEY", operator["secret_key"])
    monkeypatch.setenv("INFERENCE_STATE_DIR", str(tmp_path / "nowhere"))
    return store


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("id", "secret_key", "created_at")}


def test_remote_and_local_print_the_same_documents(
        tmp_path: Path, remote_store: Store, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    remote_project = _run(capsys, "projects", "create", "team", "--rpm", "5")
    remote_updated = _run(capsys, "projects", "update", remote_project["id"],
                          "--max-concurrent", "3")
    remote_key = _run(capsys, "keys", "create", "--permission-set",
                      "GenerativeApisModelAccess", "--project", remote_project["id"],
                      "--name", "app")
    remote_keys = _run(capsys, "keys", "list", "--project", remote_project["id"])
    remote_revoked = _run(capsys, "keys", "revoke", remote_key["id"])
    remote_audit = _run(capsys, "audit", "--limit", "2")
    assert not (tmp_path / "nowhere").exists(), "remote mode opens no local store"
    assert remote_store.project(remote_project["id"]) == remote_updated

    for name in ("INFERENCE_BASE_URL", "INFERENCE_API_KEY"):
        monkeypatch.delenv(name)
    local_project = _run(capsys, "projects", "create", "team", "--rpm", "5")
    local_updated = _run(capsys, "projects", "update", local_project["id"],
                         "--max-concurrent", "3")
    local_key = _run(capsys, "keys", "create", "--permission-set",
                     "GenerativeApisModelAccess", "--project", local_project["id"],
                     "--name", "app")
    local_keys = _run(capsys, "keys", "list", "--project", local_project["id"])
    local_revoked = _run(capsys, "keys", "revoke", local_key["id"])
    local_audit = _run(capsys, "audit", "--limit", "2")

    assert _strip(remote_updated) == _strip(local_updated)
    assert set(remote_key) == set(local_key)
    assert _strip(remote_key) == {**_strip(local_key), "projects": [remote_project["id"]]}
    # Organisation-wide keys reach every project: the service's operator key is listed too.
    assert [_strip(k) for k in remote_keys if not k["organization"]] == [
        {**_strip(k), "projects": [remote_project["id"]]} for k in local_keys]
    assert set(remote_revoked) == set(local_revoked) and remote_revoked["revoked_now"]
    assert set(remote_audit) == set(local_audit) == {"object", "data", "has_more"}
    assert [e["action"] for e in remote_audit["data"]] == [
        e["action"] for e in local_audit["data"]] == ["key.revoke", "key.create"]
    assert {e["actor_key_id"] for e in local_audit["data"]} == {"local"}
    assert {e["client_address"] for e in remote_audit["data"]} == {"testclient"}


def test_a_remote_refusal_is_an_error_document(remote_store: Store,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    refused = _run(capsys, "projects", "delete", remote_store.default_project_id(), status=2)
    assert refused["error"].startswith("HTTP 409")
    bad = _run(capsys, "keys", "create", "--permission-set", "GenerativeApisModelAccess",
               "--project", "no-such-project", status=2)
    assert bad["error"].startswith("HTTP 400")


@pytest.mark.parametrize(("config", "printed"), [
    ("laptop.yaml", "http://127.0.0.1:8000/v1"),  # the ingress's own front
    ("gpu-cluster.yaml", "http://0.0.0.0:8000/v1"),  # Serve's proxy on the head node
])
def test_init_prints_where_the_config_s_api_listens(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        config: str, printed: str) -> None:
    monkeypatch.setenv("INFERENCE_STATE_DIR", str(tmp_path / "state"))
    config_path = Path(__file__).resolve().parents[2] / "config" / config
    assert _run(capsys, "init", "--config", str(config_path))["base_url"] == printed
