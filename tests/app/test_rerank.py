"""``POST /v1/rerank`` and ``POST /v2/rerank`` in-process, over the models double (whose score
is the share of a document's words that are in the query)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from control.store import Store
from messages import RerankJob
from tests.support.models_double import CHAT, EMBED, RERANK, TRANSCRIBE, ModelsDoubleForTests

DOCS = ["the cat sat", "dogs bark loudly", "a cat and a dog"]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": EMBED, "query": "where is the cat", "documents": DOCS, **fields}


def test_v1_ranks_documents_highest_score_first_with_their_text(client: TestClient) -> None:
    resp = client.post("/v1/rerank", json=body())
    assert resp.status_code == 200, resp.text
    reply = resp.json()
    assert reply["model"] == EMBED and reply["id"].startswith("rerank-")
    assert [r["index"] for r in reply["results"]] == [0, 2, 1]
    scores = [r["relevance_score"] for r in reply["results"]]
    assert scores == sorted(scores, reverse=True)
    assert reply["results"][0]["document"] == {"text": "the cat sat"}
    assert reply["usage"] == {"prompt_tokens": 4 + 3 + 3 + 5, "total_tokens": 15}


def test_v1_takes_text_objects_top_n_and_no_documents(client: TestClient,
                                                      models: ModelsDoubleForTests) -> None:
    docs = [{"text": d} for d in DOCS]
    reply = client.post("/v1/rerank", json=body(documents=docs, top_n=1,
                                                return_documents=False)).json()
    assert reply["results"] == [{"index": 0, "relevance_score": pytest.approx(2 / 3)}]
    assert models.sent[-1] == RerankJob("where is the cat", DOCS)


def test_top_n_beyond_the_documents_returns_them_all(client: TestClient) -> None:
    reply = client.post("/v1/rerank", json=body(top_n=50)).json()
    assert len(reply["results"]) == 3


def test_a_rerank_model_reranks_and_is_refused_on_embeddings(client: TestClient) -> None:
    assert client.post("/v1/rerank", json=body(model=RERANK)).status_code == 200
    refused = client.post("/v1/embeddings", json={"model": RERANK, "input": "x"})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "model"
    assert refused.json()["error"]["code"] == "model_not_supported"


@pytest.mark.parametrize("model", [CHAT, TRANSCRIBE])
def test_a_chat_or_speech_model_cannot_rerank(client: TestClient, model: str) -> None:
    for path in ("/v1/rerank", "/v2/rerank"):
        resp = client.post(path, json=body(model=model))
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == "model"


def test_unknown_model_is_404(client: TestClient) -> None:
    resp = client.post("/v1/rerank", json=body(model="nope"))
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(("fields", "param"), [
    ({"query": ""}, "query"),
    ({"query": "   "}, "query"),
    ({"query": 3}, "query"),
    ({"query": None}, "query"),
    ({"documents": []}, "documents"),
    ({"documents": ["x"] * 1001}, "documents"),
    ({"documents": ["fine", ""]}, "documents"),
    ({"documents": [{"text": ""}]}, "documents"),
    ({"documents": [{"txt": "x"}]}, "documents"),
    ({"documents": "one string"}, "documents"),
    ({"documents": [3]}, "documents"),
    ({"top_n": 0}, "top_n"),
    ({"top_n": "2"}, "top_n"),
    ({"return_documents": "no"}, "return_documents"),
    ({"rank_fields": ["text"]}, "rank_fields"),
    ({"model": ""}, "model"),
])
def test_v1_bad_input_is_a_400_naming_the_field(client: TestClient, fields: dict[str, Any],
                                                param: str) -> None:
    resp = client.post("/v1/rerank", json=body(**fields))
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].split("[")[0] == param, error


def test_v2_answers_in_cohere_v2_shape(client: TestClient,
                                       models: ModelsDoubleForTests) -> None:
    resp = client.post("/v2/rerank", json={
        "model": RERANK, "query": "where is the cat", "documents": DOCS, "top_n": 2,
        "max_tokens_per_doc": 64, "priority": 0})
    assert resp.status_code == 200, resp.text
    reply = resp.json()
    assert set(reply) == {"id", "results", "meta"}
    assert [r["index"] for r in reply["results"]] == [0, 2]
    assert set(reply["results"][0]) == {"index", "relevance_score"}
    assert reply["meta"]["tokens"] == {"input_tokens": 15, "output_tokens": 0}
    assert models.sent[-1] == RerankJob("where is the cat", DOCS, truncate_tokens=64)


@pytest.mark.parametrize(("fields", "param"), [
    ({"return_documents": True}, "return_documents"),  # v1's field, not Cohere v2's
    ({"documents": [{"text": "x"}]}, "documents"),
    ({"max_tokens_per_doc": 0}, "max_tokens_per_doc"),
    ({"relevant_spans": {"mode": "enabled"}}, "relevant_spans"),
    ({"priority": -1}, "priority"),
    ({"top_n": 0}, "top_n"),
])
def test_v2_bad_input_is_a_400_naming_the_field(client: TestClient, fields: dict[str, Any],
                                                param: str) -> None:
    resp = client.post("/v2/rerank", json=body(**fields))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"].split("[")[0] == param


def test_rerank_answers_under_a_project_prefix(client: TestClient, store: Store) -> None:
    project = store.default_project_id()
    for path in ("v1", "v2"):
        resp = client.post(f"/{project}/{path}/rerank", json=body())
        assert resp.status_code == 200, resp.text


def test_rerank_is_metered_as_prompt_tokens(client: TestClient) -> None:
    assert client.post("/v1/rerank", json=body()).status_code == 200
    assert client.post("/v2/rerank", json=body(model=RERANK)).status_code == 200
    rows = client.get("/v1/usage").json()["data"]
    assert sorted((r["model"], r["requests"], r["prompt_tokens"]) for r in rows) == [
        (EMBED, 1, 15), (RERANK, 1, 15)]


def test_model_cards_say_task_routes_and_status(client: TestClient) -> None:
    cards = {c["id"]: c for c in client.get("/v1/models").json()["data"]}
    assert cards[EMBED]["routes"] == ["/v1/embeddings", "/v1/rerank", "/v2/rerank"]
    assert cards[RERANK]["task"] == "rerank"
    assert cards[RERANK]["routes"] == ["/v1/rerank", "/v2/rerank"]
    assert cards[CHAT]["routes"] == ["/v1/chat/completions", "/v1/completions", "/v1/responses"]
    assert cards[TRANSCRIBE]["routes"] == ["/v1/audio/transcriptions"]
    assert {c["status"] for c in cards.values()} == {"active"}
