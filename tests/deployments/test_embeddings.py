"""The embedding replica (deployments/embeddings.py): its helpers (`dimensions`,
`encoding_format`, encoding threads), and the replica itself over a sentence-transformers
double."""

from __future__ import annotations

import base64
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from deployments import embeddings
from deployments.embeddings import EmbeddingDeployment, encode_threads, encode_vector, shorten
from launch.cpu_layout import MODEL_CPUS_ENV
from messages import APIError, EmbeddingJob, ModelCard, Reply, UnexpectedFailure, Usage
from tests.support.engine_doubles import SentenceTransformerDoubleForTests, WordTokenizerDouble


def test_shorten_keeps_the_head_and_renormalises() -> None:
    v = np.array([3.0, 4.0, 12.0], dtype=np.float32) / 13.0
    out = shorten(v, 2)
    assert np.allclose(out, [0.6, 0.8])
    assert np.isclose(np.linalg.norm(out), 1.0)
    assert shorten(v, None) is v


def test_base64_is_little_endian_float32_of_the_float_form() -> None:
    v = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    raw = base64.b64decode(encode_vector(v, "base64"))  # type: ignore[arg-type]
    assert np.frombuffer(raw, dtype="<f4").tolist() == encode_vector(v, "float")


def test_encoding_uses_every_core_the_layout_gives_unless_configured() -> None:
    assert encode_threads(None, {0, 1}) == 2  # under the CPU layout: every core
    assert encode_threads(None, None) is None  # no layout: Ray's choice (num_cpus)
    assert encode_threads(1, {0, 1}) == 1  # the config's word wins


# --- the replica, over a sentence-transformers double --------------------------------------

MODEL = "org/embed:fp32"
POISON = WordTokenizerDouble.POISON


def spec(**embedding: Any) -> dict[str, Any]:
    return {"id": MODEL, "task": "embedding", "source": "org/embed", "embedding": embedding}


async def replica_of(monkeypatch: pytest.MonkeyPatch, raw: dict[str, Any]) -> Any:
    # The replica imports the library when it starts; it finds the double instead.
    monkeypatch.setitem(sys.modules, "sentence_transformers",
                        SimpleNamespace(SentenceTransformer=SentenceTransformerDoubleForTests))
    monkeypatch.setattr(embeddings, "resolve", lambda source: f"/models/{source}")
    monkeypatch.delenv(MODEL_CPUS_ENV, raising=False)  # no CPU layout: leave this process be
    return EmbeddingDeployment.func_or_class(raw)  # type: ignore[attr-defined]


@pytest.fixture
async def replica(monkeypatch: pytest.MonkeyPatch) -> Any:
    return await replica_of(monkeypatch, spec())


def job(*texts: str, single: bool = False, **options: Any) -> EmbeddingJob:
    return EmbeddingJob(list(texts), single, **options)


async def test_describe_gives_the_models_dimensions_and_length(replica: Any) -> None:
    card = await replica.describe()
    assert isinstance(card, ModelCard) and card.task == "embedding"
    assert (card.dimensions, card.context_length) == (4, 8)
    assert replica.model.path == "/models/org/embed"


async def test_a_reply_has_a_vector_per_input_and_the_prompt_tokens(replica: Any) -> None:
    reply = await replica.embed(job("a b", "c"))
    assert isinstance(reply, Reply)
    assert reply.usage == Usage(4 + 3)  # words plus [CLS] and [SEP]
    assert reply.body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    data = reply.body["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert all(len(d["embedding"]) == 4 for d in data)
    assert np.isclose(np.linalg.norm(data[0]["embedding"]), 1.0)
    short = await replica.embed(job("a b", dimensions=2))
    assert len(short.body["data"][0]["embedding"]) == 2


async def test_more_dimensions_than_the_model_has_is_a_400(replica: Any) -> None:
    refused = await replica.embed(job("a", dimensions=5))
    assert isinstance(refused, APIError)
    assert (refused.status, refused.param) == (400, "dimensions")


@pytest.mark.parametrize(("texts", "single", "named"), [
    (["w " * 7], True, "input is 9 tokens"),
    (["fits", "w " * 7], False, "input[1] is 9 tokens"),
])
async def test_an_input_over_the_models_length_is_a_400_naming_it(
        replica: Any, texts: list[str], single: bool, named: str) -> None:
    refused = await replica.embed(job(*texts, single=single))
    assert isinstance(refused, APIError)
    assert (refused.status, refused.param) == (400, "input")
    assert refused.message.startswith(named)
    assert replica.model.encoded == []


@pytest.mark.parametrize(("asked", "kept"), [(4, "w0 w1"), (-1, "w0 w1 w2 w3 w4 w5")])
async def test_truncate_prompt_tokens_cuts_the_input(replica: Any, asked: int,
                                                     kept: str) -> None:
    long = " ".join(f"w{i}" for i in range(10))
    reply = await replica.embed(job(long, truncate_prompt_tokens=asked))
    assert isinstance(reply, Reply)
    assert replica.model.encoded == [[kept]]
    assert reply.usage == Usage(len(kept.split()) + 2)


async def test_one_failing_request_of_a_call_fails_alone(replica: Any) -> None:
    outcomes = await replica.embed_many([job("a"), job(POISON), job("b c"),
                                         job("d", dimensions=5)])
    assert isinstance(outcomes[1], UnexpectedFailure)
    assert "the tokenizer failed" in outcomes[1].detail
    assert [o.usage for o in (outcomes[0], outcomes[2])] == [Usage(3), Usage(4)]
    refused = outcomes[3]  # a refusal is the client's answer, not a failure
    assert isinstance(refused, APIError) and refused.param == "dimensions"


async def test_a_config_that_misstates_the_model_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="embedding.dimensions 384, the model has 4"):
        await replica_of(monkeypatch, spec(dimensions=384))
