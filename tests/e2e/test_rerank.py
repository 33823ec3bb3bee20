"""Rerank on the live app: ``POST /v1/rerank`` over httpx and ``POST /v2/rerank`` through
Cohere's own client, on the built-in embedding model (cosine scores), and a cross-encoder
deployed as a second app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import httpx
import pytest
from cohere.errors import BadRequestError, NotFoundError

from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, inference_cli, make_client

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

QUERY = "What is the capital of France?"
DOCUMENTS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital and largest city of France.",
    "Bananas are a good source of potassium.",
]
ANSWER = 1  # the document that answers QUERY


def rerank(http: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"model": EMBED_MODEL, "query": QUERY, "documents": DOCUMENTS, **fields}
    return http.post("/v1/rerank", json=body)


def test_the_document_that_answers_ranks_first(http: httpx.Client) -> None:
    resp = rerank(http)
    assert resp.status_code == 200, resp.text
    reply = resp.json()
    assert reply["model"] == EMBED_MODEL
    results = reply["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    assert results[0]["index"] == ANSWER
    assert results[0]["document"] == {"text": DOCUMENTS[ANSWER]}
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)  # cosines
    assert reply["usage"]["prompt_tokens"] > 0
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"]


def test_top_n_and_no_documents(http: httpx.Client) -> None:
    reply = rerank(http, top_n=1, return_documents=False,
                   documents=[{"text": d} for d in DOCUMENTS]).json()
    assert len(reply["results"]) == 1
    assert reply["results"][0]["index"] == ANSWER
    assert "document" not in reply["results"][0]
    assert len(rerank(http, top_n=10).json()["results"]) == 3  # all of them, as Cohere


def test_rerank_answers_under_the_project_prefix(base_url: str, admin_key: str) -> None:
    project = inference_cli("projects", "create", "rerank-prefixed")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                        "--project", project)["secret_key"]
    resp = httpx.post(f"{base_url}/{project}/v1/rerank", timeout=120,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": EMBED_MODEL, "query": QUERY, "documents": DOCUMENTS})
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["index"] == ANSWER


@pytest.mark.parametrize(("fields", "param"), [
    ({"query": ""}, "query"),
    ({"documents": []}, "documents"),
    ({"documents": ["x"] * 1001}, "documents"),
    ({"documents": ["fine", ""]}, "documents"),
    ({"top_n": 0}, "top_n"),
    ({"top_n": "1"}, "top_n"),
    ({"rank_fields": ["text"]}, "rank_fields"),
    ({"documents": ["word " * 400]}, "documents"),  # over the model's 256 tokens
    ({"model": CHAT_MODEL}, "model"),
])
def test_bad_input_is_a_400_naming_the_field(http: httpx.Client, fields: dict[str, Any],
                                             param: str) -> None:
    resp = rerank(http, **fields)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].split("[")[0] == param


@pytest.fixture(scope="module")
def co(base_url: str, admin_key: str) -> cohere.ClientV2:
    return cohere.ClientV2(base_url=base_url, api_key=admin_key, timeout=120)


def test_cohere_v2_client_reranks(co: cohere.ClientV2) -> None:
    reply = co.rerank(model=EMBED_MODEL, query=QUERY, documents=DOCUMENTS, top_n=2)
    assert reply.results[0].index == ANSWER
    assert len(reply.results) == 2
    assert reply.results[0].relevance_score >= reply.results[1].relevance_score
    assert reply.meta is not None and reply.meta.tokens is not None
    assert (reply.meta.tokens.input_tokens or 0) > 0


def test_cohere_v2_client_gets_its_own_errors(co: cohere.ClientV2) -> None:
    with pytest.raises(BadRequestError) as bad:
        co.rerank(model=EMBED_MODEL, query="", documents=DOCUMENTS)
    assert bad.value.body["error"]["param"] == "query"
    with pytest.raises(BadRequestError) as spans:
        co.rerank(model=EMBED_MODEL, query=QUERY, documents=DOCUMENTS,
                  relevant_spans={"mode": "enabled"})  # type: ignore[arg-type]
    assert spans.value.body["error"]["param"] == "relevant_spans"
    with pytest.raises(NotFoundError):
        co.rerank(model="no-such-model", query=QUERY, documents=DOCUMENTS)


def test_cohere_v2_max_tokens_per_doc_truncates_only_when_asked(co: cohere.ClientV2) -> None:
    long = ["word " * 400, DOCUMENTS[ANSWER]]
    with pytest.raises(BadRequestError) as refused:
        co.rerank(model=EMBED_MODEL, query=QUERY, documents=long)
    assert refused.value.body["error"]["param"] == "documents"
    reply = co.rerank(model=EMBED_MODEL, query=QUERY, documents=long, max_tokens_per_doc=32)
    assert reply.results[0].index == 1


def test_rerank_is_recorded_in_the_ledger(base_url: str, admin_key: str) -> None:
    project = inference_cli("projects", "create", "rerank-metered")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisFullAccess",
                        "--project", project)["secret_key"]
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": EMBED_MODEL, "query": QUERY, "documents": DOCUMENTS, "user": "carol"}
    v1 = httpx.post(f"{base_url}/{project}/v1/rerank", json=body, headers=headers,
                    timeout=120).json()
    co = cohere.ClientV2(base_url=f"{base_url}/{project}", api_key=key, timeout=120)
    v2 = co.rerank(model=EMBED_MODEL, query=QUERY, documents=DOCUMENTS)
    assert v2.meta is not None and v2.meta.tokens is not None
    want = {("carol", v1["usage"]["prompt_tokens"]),
            (None, int(v2.meta.tokens.input_tokens or 0))}

    def recorded() -> set[tuple[str | None, int]]:
        rows = inference_cli("usage", "--project", project)
        return {(r["user"], r["prompt_tokens"]) for r in rows if r["model"] == EMBED_MODEL}

    deadline = time.monotonic() + 15
    while recorded() != want and time.monotonic() < deadline:
        time.sleep(0.5)
    assert recorded() == want
    # The query counted once per request, each document once: the same request, the same count.
    assert v1["usage"]["prompt_tokens"] == v2.meta.tokens.input_tokens


def test_model_cards_say_task_routes_and_status(base_url: str, admin_key: str) -> None:
    cards = {m.id: m.model_dump() for m in make_client(base_url, admin_key).models.list()}
    assert cards[EMBED_MODEL]["routes"] == ["/v1/embeddings", "/v1/rerank", "/v2/rerank"]
    assert cards[CHAT_MODEL]["routes"] == ["/v1/chat/completions", "/v1/completions", "/v1/responses"]
    assert all(card["status"] == "active" for card in cards.values())


# --- a cross-encoder (task rerank) beside the main app -------------------------------------

CROSS_ENCODER = "test/untrained-cross-encoder:fp32"


@pytest.fixture(scope="module")
def cross_encoder_url(serve_proxy_url: str, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[str]:
    """A second app serving a real ``CrossEncoder`` built from the built-in MiniLM folder:
    no cross-encoder with trained weights is installable offline, so its classification head
    is untrained (its scores mean nothing) while everything around it is real."""
    from ray import serve
    from sentence_transformers import CrossEncoder

    from deployments.app import build_app
    from deployments.builtin_models import resolve

    folder: Path = tmp_path_factory.mktemp("cross-encoder")
    CrossEncoder(resolve("builtin:all-minilm-l6-v2"), num_labels=1, device="cpu").save(
        str(folder))
    args: dict[str, Any] = {
        "ingress": {"deployment": {"num_cpus": 0.01}},
        "models": [
            {"id": CROSS_ENCODER, "task": "rerank", "source": str(folder),
             "deployment": {"num_cpus": 0.01}},
        ],
    }
    serve.run(build_app(args), name="cross-encoder", route_prefix="/ce")
    try:
        yield f"{serve_proxy_url}/ce"
    finally:
        serve.delete("cross-encoder")


def test_untrained_cross_encoder_scores_every_pair_and_counts_the_query_per_pair(
        cross_encoder_url: str, admin_key: str) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    body = {"model": CROSS_ENCODER, "query": QUERY, "documents": DOCUMENTS}
    resp = httpx.post(f"{cross_encoder_url}/v1/rerank", json=body, headers=headers,
                      timeout=120)
    assert resp.status_code == 200, resp.text
    reply = resp.json()
    assert reply["model"] == CROSS_ENCODER
    assert sorted(r["index"] for r in reply["results"]) == [0, 1, 2]
    scores = [r["relevance_score"] for r in reply["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)  # the model's own sigmoid
    # Each pair is [CLS] query [SEP] document [SEP]: the query is read with every document.
    from transformers import AutoTokenizer

    from deployments.builtin_models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("builtin:all-minilm-l6-v2"))
    pairs = tok([QUERY] * 3, DOCUMENTS)["input_ids"]
    assert reply["usage"]["prompt_tokens"] == sum(len(p) for p in pairs)

    co = cohere.ClientV2(base_url=cross_encoder_url, api_key=admin_key, timeout=120)
    v2 = co.rerank(model=CROSS_ENCODER, query=QUERY, documents=DOCUMENTS, top_n=1)
    assert len(v2.results) == 1


def test_untrained_cross_encoder_is_refused_on_embeddings_and_describes_itself(
        cross_encoder_url: str, admin_key: str) -> None:
    client = make_client(cross_encoder_url, admin_key)
    card = client.models.retrieve(CROSS_ENCODER).model_dump()
    assert card["task"] == "rerank"
    assert card["routes"] == ["/v1/rerank", "/v2/rerank"]
    assert card["status"] == "active"
    headers = {"Authorization": f"Bearer {admin_key}"}
    resp = httpx.post(f"{cross_encoder_url}/v1/embeddings", headers=headers, timeout=120,
                      json={"model": CROSS_ENCODER, "input": "x"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "model"
    long = httpx.post(f"{cross_encoder_url}/v1/rerank", headers=headers, timeout=120,
                      json={"model": CROSS_ENCODER, "query": QUERY,
                            "documents": ["fits", "word " * 600]})
    assert long.status_code == 400
    assert long.json()["error"]["param"] == "documents"
    assert "documents[1]" in long.json()["error"]["message"]
