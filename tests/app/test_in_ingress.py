"""An embedding model placed in the ingress (app/in_ingress.py): ServeModels encodes with the
model in its own process, over a sentence-transformers double, and answers as the model's own
replica would (the same replies, refusals, failures, cards); its queue bound and
cancellation; the route never builds a Serve call."""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from app.model_handles import ServeModels
from deployments import embeddings
from deployments.config import AppConfig
from launch.cpu_layout import MODEL_CPUS_ENV
from messages import APIError, EmbeddingJob, ModelRoute, Reply, RerankJob, Usage
from tests.support.engine_doubles import SentenceTransformerDoubleForTests, WordTokenizerDouble

MODEL = "org/embed:fp32"


class NoHandleForTests:
    """Any Serve call from the ingress for this model fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a Serve call ({name}) for a model placed in the ingress")


def served(monkeypatch: pytest.MonkeyPatch, max_requests: int = -1,
           **embedding: Any) -> ServeModels:
    monkeypatch.setitem(sys.modules, "sentence_transformers",
                        SimpleNamespace(SentenceTransformer=SentenceTransformerDoubleForTests))
    monkeypatch.setattr(embeddings, "resolve", lambda source: f"/models/{source}")
    monkeypatch.delenv(MODEL_CPUS_ENV, raising=False)
    spec = AppConfig.model_validate({"models": [{
        "id": MODEL, "task": "embedding", "source": "org/embed",
        "embedding": {"placement": "ingress", **embedding}}]}).models[0]
    return ServeModels({MODEL: ModelRoute(
        task="embedding", handle=NoHandleForTests(), wait_for_replica_s=None,
        scales_to_zero=False, card=None, in_ingress_spec=spec.model_dump(),
        max_requests=max_requests)})


def job(*texts: str, **options: Any) -> EmbeddingJob:
    return EmbeddingJob(list(texts), len(texts) == 1, **options)


def model_of(models: ServeModels) -> Any:
    return models._in_ingress[MODEL]._engine.model


async def test_replies_and_cards_come_from_the_model_in_this_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    models = served(monkeypatch)
    reply = await models.embed(MODEL, job("a b", "c"))
    assert isinstance(reply, Reply) and reply.usage == Usage(4 + 3)
    assert [len(d["embedding"]) for d in reply.body["data"]] == [4, 4]
    [card] = await models.cards()
    assert (card.id, card.dimensions, card.context_length) == (MODEL, 4, 8)
    ranked = await models.rerank(MODEL, RerankJob("a", ["a", "b c"]))
    assert len(ranked.body["scores"]) == 2
    await models.check_health()


async def test_concurrent_requests_share_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    models = served(monkeypatch)
    await asyncio.gather(*(models.embed(MODEL, job(t)) for t in "abcd"))
    assert sorted(t for batch in model_of(models).encoded for t in batch) == list("abcd")
    assert len(model_of(models).encoded) < 4


async def test_refusals_and_failures_are_raised_as_from_a_replica(
        monkeypatch: pytest.MonkeyPatch) -> None:
    models = served(monkeypatch)
    with pytest.raises(APIError) as refused:
        await models.embed(MODEL, job("w " * 7))
    assert (refused.value.status, refused.value.param) == (400, "input")
    with pytest.raises(RuntimeError, match="the tokenizer failed"):
        await models.embed(MODEL, job(WordTokenizerDouble.POISON))


async def test_beyond_its_bound_a_request_is_a_fast_503(monkeypatch: pytest.MonkeyPatch) -> None:
    models = served(monkeypatch, max_requests=2)
    first = [asyncio.ensure_future(models.embed(MODEL, job(t))) for t in "ab"]
    await asyncio.sleep(0)  # both admitted, waiting for their batch
    with pytest.raises(APIError) as full:
        await models.embed(MODEL, job("c"))
    assert full.value.status == 503
    assert all(isinstance(r, Reply) for r in await asyncio.gather(*first))
    assert isinstance(await models.embed(MODEL, job("d")), Reply)  # room again


async def test_a_request_given_up_on_leaves_the_batches_it_had_not_reached(
        monkeypatch: pytest.MonkeyPatch) -> None:
    models = served(monkeypatch, max_batch_size=1)
    many = asyncio.ensure_future(models.embed(MODEL, job(*(f"w{i}" for i in range(20)))))
    while not model_of(models).encoded:
        await asyncio.sleep(0.001)
    many.cancel()  # the client left, or its deadline passed
    with pytest.raises(asyncio.CancelledError):
        await many
    await asyncio.sleep(0.05)
    assert len(model_of(models).encoded) < 20
    assert models._in_ingress[MODEL]._requests == 0  # its place in the bound is free
