"""Aliases and the models' lifecycle as clients meet them (app/model_catalog.py): the alias
and the retired model run on their model, replies and the ledger name the model that ran, a
deprecated model's replies carry Deprecation, Sunset and Link, and the cards say it all."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from app.model_catalog import Lifecycle, ModelCatalog
from app.services import Limits
from control.deployment import AsyncStore
from control.store import Store
from messages import ModelCard
from tests.support.models_double import CHAT, EMBED, ModelsDoubleForTests, chat_body

OLD_CHAT = "org/old-chat:bf16"          # end of life: served by CHAT
ALIAS = "chat-latest"                   # another name of CHAT
DEPRECATION = date(2026, 11, 1)
SUNSET = date(2027, 3, 31)


def catalog() -> ModelCatalog:
    return ModelCatalog(
        {
            CHAT: Lifecycle(aliases=(ALIAS,)),
            EMBED: Lifecycle(status="deprecated", deprecated_at=DEPRECATION, eol_at=SUNSET),
            OLD_CHAT: Lifecycle(status="eol", deprecated_at=date(2026, 6, 1),
                                eol_at=date(2026, 9, 1), replacement=CHAT),
        },
        [ModelCard(id=OLD_CHAT, created=1, owned_by="o", task="chat")],
    )


@pytest.fixture
def lifecycle_client(models: ModelsDoubleForTests, store: Store, key: str) -> TestClient:
    app = build_api(models, AsyncStore(store), limits=Limits(max_body_bytes=65536),
                    catalog=catalog(), usage_flush_seconds=0.05)
    return TestClient(app, raise_server_exceptions=False,
                      headers={"Authorization": f"Bearer {key}"})


def ledger_models(store: Store) -> dict[str, int]:
    return {row["model"]: row["requests"] for row in store.usage()}


def test_an_alias_runs_on_its_model_and_the_reply_and_ledger_name_the_model(
        lifecycle_client: TestClient, models: ModelsDoubleForTests, store: Store) -> None:
    with lifecycle_client as client:
        resp = client.post("/v1/chat/completions", json=chat_body(model=ALIAS))
        assert resp.status_code == 200, resp.text
        assert resp.json()["model"] == CHAT
        assert models.sent[-1]["model"] == CHAT
        assert "deprecation" not in resp.headers and "sunset" not in resp.headers
    assert ledger_models(store) == {CHAT: 1}


def test_an_end_of_life_model_is_served_by_its_replacement_and_says_why(
        lifecycle_client: TestClient, models: ModelsDoubleForTests, store: Store) -> None:
    with lifecycle_client as client:
        whole = client.post("/v1/chat/completions", json=chat_body(model=OLD_CHAT))
        assert whole.status_code == 200, whole.text
        assert whole.json()["model"] == CHAT
        streamed = client.post("/v1/chat/completions",
                               json=chat_body(model=OLD_CHAT, stream=True))
        assert streamed.status_code == 200, streamed.text
        legacy = client.post("/v1/completions", json={"model": OLD_CHAT, "prompt": "x"})
        assert legacy.status_code == 200, legacy.text
        for resp in (whole, streamed, legacy):
            assert resp.headers["deprecation"] == "@1780272000"  # 2026-06-01T00:00:00Z
            assert parsedate_to_datetime(resp.headers["sunset"]).date() == date(2026, 9, 1)
            assert resp.headers["link"] == f'</v1/models/{CHAT}>; rel="successor-version"'
        assert [body["model"] for body in models.sent] == [CHAT, CHAT, CHAT]
    assert set(ledger_models(store)) == {CHAT}  # the model that ran, never the name sent


def test_a_deprecated_model_answers_with_its_dates_in_the_headers(
        lifecycle_client: TestClient, store: Store) -> None:
    resp = lifecycle_client.post("/v1/embeddings", json={"model": EMBED, "input": "x"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == EMBED
    deprecated = int(resp.headers["deprecation"].removeprefix("@"))
    assert datetime.fromtimestamp(deprecated, UTC).date() == DEPRECATION
    assert parsedate_to_datetime(resp.headers["sunset"]).date() == SUNSET
    assert "link" not in resp.headers  # no replacement declared
    # Under a project's path as well.
    scoped = lifecycle_client.post(f"/{store.default_project_id()}/v1/embeddings",
                                   json={"model": EMBED, "input": "x"})
    assert scoped.status_code == 200 and scoped.headers["sunset"] == resp.headers["sunset"]


def test_a_retired_name_on_the_wrong_route_is_refused_with_the_name_the_client_sent(
        lifecycle_client: TestClient) -> None:
    resp = lifecycle_client.post("/v1/embeddings", json={"model": OLD_CHAT, "input": "x"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == "model" and error["code"] == "model_not_supported"
    assert error["message"] == (f"'{OLD_CHAT}' is a chat model; /v1/embeddings takes an "
                                "embedding model.")


def test_unknown_names_are_still_the_404(lifecycle_client: TestClient) -> None:
    resp = lifecycle_client.post("/v1/chat/completions", json=chat_body(model="no-such"))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"


def cards(client: TestClient) -> dict[str, dict[str, Any]]:
    resp = client.get("/v1/models")
    assert resp.status_code == 200, resp.text
    return {card["id"]: card for card in resp.json()["data"]}


def test_cards_show_status_dates_replacement_and_aliases(lifecycle_client: TestClient) -> None:
    listed = cards(lifecycle_client)
    assert listed[CHAT]["status"] == "active" and listed[CHAT]["aliases"] == [ALIAS]
    assert "eol_at" not in listed[CHAT]
    assert listed[EMBED]["status"] == "deprecated"
    assert (listed[EMBED]["deprecated_at"], listed[EMBED]["eol_at"]) == ("2026-11-01",
                                                                         "2027-03-31")
    retired = listed[OLD_CHAT]
    assert retired["status"] == "eol" and retired["replacement"] == CHAT
    assert "context_length" not in retired  # it runs no more
    assert ALIAS not in listed  # an alias is a name of a card, not a card

    by_alias = lifecycle_client.get(f"/v1/models/{ALIAS}")
    assert by_alias.status_code == 200 and by_alias.json()["id"] == CHAT
    one = lifecycle_client.get(f"/v1/models/{OLD_CHAT}")
    assert one.status_code == 200, one.text
    assert one.json() == retired
    assert one.headers["link"] == f'</v1/models/{CHAT}>; rel="successor-version"'


def test_without_lifecycles_every_model_is_active(client: TestClient) -> None:
    assert {card["status"] for card in cards(client).values()} == {"active"}


def test_resolution_follows_retired_replacements_to_a_model_that_runs() -> None:
    chain = ModelCatalog({
        "a": Lifecycle(status="eol", deprecated_at=date(2025, 1, 1), eol_at=date(2025, 6, 1),
                       replacement="b"),
        "b": Lifecycle(status="eol", deprecated_at=date(2026, 1, 1), eol_at=date(2026, 6, 1),
                       replacement="c", aliases=("b-latest",)),
        "c": Lifecycle(),
    })
    assert chain.resolve("a").model == "c"
    # The headers are those of the model the client named.
    assert chain.resolve("a").notice["Link"] == '</v1/models/b>; rel="successor-version"'
    assert chain.resolve("b-latest").model == "c"
    assert chain.resolve("c").notice == {}
    assert chain.resolve("unknown").model == "unknown"


def test_the_catalog_crosses_to_the_ingress_replica() -> None:
    """The catalog is plain data: it crosses to the ingress replica by pickling."""
    import pickle

    again = pickle.loads(pickle.dumps(catalog()))
    assert again.resolve(ALIAS).model == CHAT
    assert again.retired_card(OLD_CHAT) is not None
