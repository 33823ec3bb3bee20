"""Rerank on the replicas: the embedding replica's cosine scores and the cross-encoder replica
(deployments/rerank.py), each over its sentence-transformers double."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from deployments import rerank
from deployments.rerank import RerankDeployment
from launch.cpu_layout import MODEL_CPUS_ENV
from messages import APIError, ModelCard, Reply, RerankJob, UnexpectedFailure, Usage
from tests.deployments.test_embeddings import replica_of, spec
from tests.support.engine_doubles import CrossEncoderDoubleForTests

# --- an embedding model: cosine of the query's and each document's vectors ----------------


@pytest.fixture
async def embedder(monkeypatch: pytest.MonkeyPatch) -> Any:
    return await replica_of(monkeypatch, spec())


async def test_embedding_scores_are_cosines_and_the_query_is_counted_once(
        embedder: Any) -> None:
    reply = await embedder.rerank(RerankJob("a b", ["c", "d e f", "a b"]))
    assert isinstance(reply, Reply)
    # The double's vector of a text is [words, 1, 2, 2], normalised.
    def unit(words: int) -> np.ndarray:
        v = np.array([words, 1.0, 2.0, 2.0])
        return v / np.linalg.norm(v)
    want = [float(unit(2) @ unit(n)) for n in (1, 3, 2)]
    assert reply.body["scores"] == pytest.approx(want)
    assert reply.usage == Usage(4 + 3 + 5 + 4)  # each text once, [CLS] and [SEP] included
    assert embedder.model.encoded == [["a b", "c", "d e f", "a b"]]  # one batch


async def test_embedding_rerank_refuses_an_over_long_text_naming_it(embedder: Any) -> None:
    long = "w " * 7
    refused = await embedder.rerank(RerankJob("q", ["fits", long]))
    assert isinstance(refused, APIError)
    assert (refused.status, refused.param) == (400, "documents")
    assert refused.message.startswith("documents[1] is 9 tokens")
    query = await embedder.rerank(RerankJob(long, ["fits"]))
    assert isinstance(query, APIError) and query.param == "query"
    assert embedder.model.encoded == []


async def test_embedding_rerank_truncates_documents_only_when_asked(embedder: Any) -> None:
    long = " ".join(f"w{i}" for i in range(10))
    reply = await embedder.rerank(RerankJob("q", [long], truncate_tokens=4))
    assert isinstance(reply, Reply)
    assert embedder.model.encoded == [["q", "w0 w1"]]
    assert reply.usage == Usage(3 + 4)


async def test_rerank_and_embedding_jobs_share_a_call(embedder: Any) -> None:
    from messages import EmbeddingJob

    outcomes = await embedder.embed_many([RerankJob("a", ["b"]), EmbeddingJob(["c"], True)])
    assert "scores" in outcomes[0].body and "data" in outcomes[1].body


# --- a rerank model: a cross-encoder scores each pair ---------------------------------------

MODEL = "org/reranker:fp32"


async def cross_encoder_of(monkeypatch: pytest.MonkeyPatch, **settings: Any) -> Any:
    monkeypatch.setitem(sys.modules, "sentence_transformers",
                        SimpleNamespace(CrossEncoder=CrossEncoderDoubleForTests))
    monkeypatch.setattr(rerank, "resolve", lambda source: f"/models/{source}")
    monkeypatch.delenv(MODEL_CPUS_ENV, raising=False)
    raw = {"id": MODEL, "task": "rerank", "source": "org/reranker", "rerank": settings}
    return RerankDeployment.func_or_class(raw)  # type: ignore[attr-defined]


async def test_cross_encoder_scores_pairs_and_counts_the_query_per_pair(
        monkeypatch: pytest.MonkeyPatch) -> None:
    replica = await cross_encoder_of(monkeypatch)
    card = await replica.describe()
    assert isinstance(card, ModelCard)
    assert (card.task, card.context_length, card.routes) == (
        "rerank", 12, ["/v1/rerank", "/v2/rerank"])
    reply = await replica.rerank(RerankJob("the cat", ["a cat", "dogs"]))
    assert isinstance(reply, Reply)
    assert reply.body["scores"] == [0.5, 0.0]
    assert replica.model.scored == [[("the cat", "a cat"), ("the cat", "dogs")]]
    assert reply.usage == Usage((2 + 2 + 3) + (2 + 1 + 3))  # [CLS] q [SEP] d [SEP], each pair


async def test_cross_encoder_refuses_an_over_long_pair_unless_truncating(
        monkeypatch: pytest.MonkeyPatch) -> None:
    replica = await cross_encoder_of(monkeypatch)
    long = "w " * 10
    refused = await replica.rerank(RerankJob("q", ["fits", long]))
    assert isinstance(refused, APIError) and refused.param == "documents"
    assert "documents[1]" in refused.message
    assert replica.model.scored == []
    cut = await replica.rerank(RerankJob("q", [long], truncate_tokens=3))
    assert isinstance(cut, Reply)
    assert replica.model.scored == [[("q", "w w w")]]
    assert cut.usage == Usage(3 + 1 + 3)  # [CLS] q [SEP], three words, [SEP]
    truncating = await cross_encoder_of(monkeypatch, truncate=True)
    whole = await truncating.rerank(RerankJob("q", [long]))
    assert isinstance(whole, Reply) and whole.usage == Usage(12)  # counted up to the model's


async def test_cross_encoder_failure_fails_the_request_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    replica = await cross_encoder_of(monkeypatch)
    failed = await replica.rerank(RerankJob("q", ["<poison>"]))
    assert isinstance(failed, UnexpectedFailure)


async def test_a_config_that_misstates_the_cross_encoder_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="rerank.max_seq_length 512, the model has 12"):
        await cross_encoder_of(monkeypatch, max_seq_length=512)
