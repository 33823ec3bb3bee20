"""Embeddings on the built-in model, through the official client."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import openai
import pytest

from tests.support.e2e import CHAT_MODEL, EMBED_MODEL

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models


def vectors(client: openai.OpenAI, texts: list[str], **kw: object) -> np.ndarray:
    reply = client.embeddings.create(model=EMBED_MODEL, input=texts, **kw)  # type: ignore[arg-type]
    assert [d.index for d in reply.data] == list(range(len(texts)))
    return np.array([d.embedding for d in reply.data])


def test_384_dimensions_and_meaning(client: openai.OpenAI) -> None:
    cat, kitten, stocks = vectors(client, ["cat", "kitten", "stock market"])
    assert cat.shape == (384,)
    assert np.isclose(np.linalg.norm(cat), 1.0, atol=1e-4)
    assert cat @ kitten > cat @ stocks


def test_usage_counts_tokens(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model=EMBED_MODEL, input=["hello world", "hi"])
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 4 + 3
    assert reply.model == EMBED_MODEL


def test_base64_equals_float(client: openai.OpenAI, http: object) -> None:
    import httpx

    assert isinstance(http, httpx.Client)
    floats = vectors(client, ["a sentence"])[0]
    raw = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": "a sentence",
                                             "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(decoded, floats.astype(np.float32))


def test_dimensions_keeps_the_head_renormalised(client: openai.OpenAI) -> None:
    full = vectors(client, ["a sentence"])[0]
    short = vectors(client, ["a sentence"], dimensions=64)[0]
    assert short.shape == (64,)
    assert np.allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-5)
    with pytest.raises(openai.BadRequestError) as info:
        vectors(client, ["a sentence"], dimensions=385)
    assert info.value.param == "dimensions"


async def test_concurrent_requests_equal_sequential_ones(
    client: openai.OpenAI, aclient: openai.AsyncOpenAI
) -> None:
    texts = [f"sentence number {i} about {topic}" for i, topic in
             enumerate(["cats", "stocks", "rain", "music", "code", "tea", "trains", "sand"])]
    sequential = [vectors(client, [t])[0] for t in texts]
    replies = await asyncio.gather(*(aclient.embeddings.create(model=EMBED_MODEL, input=t)
                                     for t in texts))
    for seq, rep in zip(sequential, replies, strict=True):
        assert np.allclose(seq, rep.data[0].embedding, atol=1e-5)


async def test_concurrent_requests_keep_their_own_options_and_errors(
    aclient: openai.AsyncOpenAI
) -> None:
    """Concurrent requests share calls to the replica (the laptop config coalesces them);
    each still gets its own inputs, dimensions and usage, and a bad one fails alone."""
    async def one(i: int) -> object:
        try:
            if i % 4 == 3:
                return await aclient.embeddings.create(model=EMBED_MODEL, input="x",
                                                       dimensions=385)
            return await aclient.embeddings.create(
                model=EMBED_MODEL, input=[f"text {i}"] * (1 + i % 3), dimensions=32 + i)
        except openai.BadRequestError as exc:
            return exc

    results = await asyncio.gather(*(one(i) for i in range(24)))
    for i, result in enumerate(results):
        if i % 4 == 3:
            assert isinstance(result, openai.BadRequestError) and result.param == "dimensions"
        else:
            assert isinstance(result, openai.types.CreateEmbeddingResponse), result
            assert len(result.data) == 1 + i % 3
            assert all(len(d.embedding) == 32 + i for d in result.data)
            assert result.usage.prompt_tokens == (1 + i % 3) * 4  # [CLS] text N [SEP]


@pytest.mark.parametrize(
    ("inputs", "param"),
    [("", "input"), ([], "input"), (["ok", ""], "input"), (["x"] * 2049, "input"),
     ("word " * 400, "input")],
    ids=["empty-string", "empty-list", "empty-item", "too-many", "too-long"],
)
def test_bad_inputs_are_400_naming_input(client: openai.OpenAI, inputs: object,
                                         param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=EMBED_MODEL, input=inputs)  # type: ignore[arg-type]
    assert info.value.param == param


def test_chat_model_on_the_embeddings_route_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=CHAT_MODEL, input="x")


def test_truncation_only_when_the_client_asks(http: object) -> None:
    import httpx

    assert isinstance(http, httpx.Client)
    long = "word " * 400
    refused = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": long})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input"
    cut = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": long,
                                            "truncate_prompt_tokens": -1}).json()
    assert cut["usage"]["prompt_tokens"] == 256 and len(cut["data"][0]["embedding"]) == 384
    short = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": long,
                                              "truncate_prompt_tokens": 10}).json()
    assert short["usage"]["prompt_tokens"] == 10


def test_token_id_input_is_refused_with_what_to_send(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=EMBED_MODEL, input=[[101, 7592, 102]])
    assert info.value.param == "input" and "text" in info.value.message
