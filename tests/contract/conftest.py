"""The HTTP edge in-process over the models' test double, one for the module's thousands of
requests (the double answers every model call at once)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from app.services import Limits
from control.deployment import AsyncStore
from control.store import Store
from tests.support.models_double import ModelsDoubleForTests


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    store = Store(tmp_path_factory.mktemp("store"))
    key = store.create_key(["GenerativeApisFullAccess"], [store.default_project_id()])
    models = ModelsDoubleForTests()
    # A chat reply of OpenAI's shape, which the Responses route reads (chat's own route
    # passes the double's stand-in through).
    models.chat_message = {"role": "assistant", "content": "Hello."}
    app = build_api(models, AsyncStore(store),
                    limits=Limits(max_body_bytes=65536))
    return TestClient(app, raise_server_exceptions=False,
                      headers={"Authorization": f"Bearer {key['secret_key']}"})
