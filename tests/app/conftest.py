"""Shared fixtures of the in-process tier: the starlette app over a test double."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from control.deployment import AsyncStore
from control.store import Store
from tests.app.test_api import FakeModelsForTests


@pytest.fixture
def models() -> FakeModelsForTests:
    return FakeModelsForTests()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


@pytest.fixture
def key(store: Store) -> str:
    secret: str = store.create_key(["GenerativeApisFullAccess"], [store.default_project_id()])[
        "secret_key"]
    return secret


@pytest.fixture
def client(models: FakeModelsForTests, store: Store, key: str) -> TestClient:
    app = build_api(models, AsyncStore(store), max_body_bytes=65536)
    return TestClient(app, raise_server_exceptions=False,
                      headers={"Authorization": f"Bearer {key}"})


