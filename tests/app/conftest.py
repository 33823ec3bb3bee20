"""Shared fixtures of the in-process tier: the starlette app over a test double."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from app.services import Limits
from control.deployment import AsyncStore
from control.store import Store
from tests.support.models_double import ModelsDoubleForTests


@pytest.fixture(autouse=True)
def one_quota_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quotas count calendar minutes; every test here runs inside one. Otherwise a test that
    spends a quota and expects the next request refused fails whenever the minute turns
    between them (a new minute rightly admits it). Minutes turning: tests/control."""
    monkeypatch.setattr("app.quota_gate.window_now", lambda now=None: 1000)
    monkeypatch.setattr("control.quota_book.window_now", lambda now=None: 1000)


@pytest.fixture
def models() -> ModelsDoubleForTests:
    return ModelsDoubleForTests()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


@pytest.fixture
def key(store: Store) -> str:
    secret: str = store.create_key(["GenerativeApisFullAccess"], [store.default_project_id()])[
        "secret_key"]
    return secret


@pytest.fixture
def client(models: ModelsDoubleForTests, store: Store, key: str) -> TestClient:
    app = build_api(models, AsyncStore(store), limits=Limits(max_body_bytes=65536))
    return TestClient(app, raise_server_exceptions=False,
                      headers={"Authorization": f"Bearer {key}"})


