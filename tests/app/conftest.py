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


