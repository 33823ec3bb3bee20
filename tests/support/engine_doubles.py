"""Test doubles of the engines inside the model replicas: vLLM's chat engine
(deployments/vllm_engine.py) and sentence-transformers' model (deployments/embeddings.py).
Each records what the replica asked of it and answers as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from deployments.config import ChatEngine
from messages import APIError, Chunk, StreamUsage, Usage


class EngineDoubleForTests:
    """Stands in for :class:`deployments.vllm_engine.VLLMChatEngine` (same constructor and
    methods). ``chat`` answers with ``answer``: a reply dict, a refusal, or a list of chunks
    to stream. With ``dies_while_running`` set, the engine dies during the request and
    raises it (an exception) or returns it (an APIError)."""

    context_length = 3072  # what the engine reports, not what the config asked for

    def __init__(self, model_path: str, served_name: str, settings: ChatEngine) -> None:
        self.model_path = model_path
        self.served_name = served_name
        self.settings = settings
        self.started = self.stopped = False
        self.dead = False
        self.sent: list[dict[str, Any]] = []
        self.shown: StreamUsage | None = None
        self.answer: dict[str, Any] | APIError | list[Chunk] = {
            "object": "chat.completion", "choices": [],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
        self.dies_while_running: Exception | APIError | None = None
        # A whole reply's steps: each reports its usage, then waits for ``step`` to be set.
        self.steps: list[Usage] = []
        self.step = asyncio.Event()
        self.cancelled = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def check_health(self) -> None:
        if self.dead:
            raise RuntimeError("the engine has died")

    async def running_requests(self) -> int:
        return 0

    async def chat(self, body: dict[str, Any], shown: StreamUsage | None = None,
                   progress: Callable[[Usage], None] | None = None
                   ) -> dict[str, Any] | AsyncIterator[Chunk] | APIError:
        self.sent.append(body)
        self.shown = shown
        for usage in self.steps:  # a whole reply's progress, as the engine generates it
            assert progress is not None
            progress(usage)
            try:
                await self.step.wait()
            except asyncio.CancelledError:
                self.cancelled = True  # as vLLM aborts the request
                raise
            self.step.clear()
        if self.dies_while_running is not None:
            self.dead = True
            if isinstance(self.dies_while_running, APIError):
                return self.dies_while_running
            raise self.dies_while_running
        if isinstance(self.answer, list):
            return _stream(self.answer)
        return self.answer


async def _stream(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    for item in chunks:
        yield item


class WordTokenizerDouble:
    """A tokenizer with a token per word, plus [CLS] and [SEP] when asked for special tokens.
    A text containing ``POISON`` makes it raise, as a bug would."""

    POISON = "<poison>"
    SPECIAL = ("[CLS]", "[SEP]")
    model_max_length = 512

    def __init__(self) -> None:
        self.words: list[str] = list(self.SPECIAL)

    def _ids(self, text: str, special: bool) -> list[int]:
        if self.POISON in text:
            raise RuntimeError("the tokenizer failed")
        ids = []
        for word in text.split():
            if word not in self.words:
                self.words.append(word)
            ids.append(self.words.index(word))
        return [0, *ids, 1] if special else ids

    def __call__(self, texts: str | list[str], add_special_tokens: bool = True,
                 truncation: bool = False) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": self._ids(texts, add_special_tokens)}
        return {"input_ids": [self._ids(t, add_special_tokens) for t in texts]}

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)


class SentenceTransformerDoubleForTests:
    """Stands in for ``sentence_transformers.SentenceTransformer``: ``max_seq_length`` 8
    tokens, vectors of 4 components, each text's vector made from its words; records every
    batch it encodes."""

    max_seq_length = 8
    dimensions = 4

    def __init__(self, path: str, device: str = "cpu") -> None:
        self.path = path
        self.device = device
        self.tokenizer = WordTokenizerDouble()
        self.encoded: list[list[str]] = []

    def get_embedding_dimension(self) -> int:
        return self.dimensions

    def encode(self, texts: list[str], normalize_embeddings: bool = False,
               convert_to_numpy: bool = True) -> np.ndarray:
        self.encoded.append(list(texts))
        vectors = np.array([[len(t.split()), 1.0, 2.0, 2.0] for t in texts], dtype=np.float32)
        if normalize_embeddings:
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors


class PairTokenizerDouble(WordTokenizerDouble):
    """:class:`WordTokenizerDouble` that also takes (text, text_pair) lists, as a
    cross-encoder's tokenizer does: [CLS] text [SEP] pair [SEP]."""

    def __call__(self, texts: str | list[str], text_pair: list[str] | None = None,  # type: ignore[override]
                 add_special_tokens: bool = True, truncation: bool = False) -> dict[str, Any]:
        if text_pair is None:
            return super().__call__(texts, add_special_tokens, truncation)
        assert isinstance(texts, list)
        return {"input_ids": [[*self._ids(t, add_special_tokens),
                               *self._ids(p, False), *([1] if add_special_tokens else [])]
                              for t, p in zip(texts, text_pair, strict=True)]}


class CrossEncoderDoubleForTests:
    """Stands in for ``sentence_transformers.CrossEncoder``: ``max_seq_length`` 12 tokens; a
    pair's score is the share of the document's words that are in the query; records every
    batch of pairs it scores."""

    max_seq_length = 12

    def __init__(self, path: str, device: str = "cpu") -> None:
        self.path = path
        self.tokenizer = PairTokenizerDouble()
        self.scored: list[list[tuple[str, str]]] = []

    def predict(self, pairs: list[tuple[str, str]], convert_to_numpy: bool = True,
                show_progress_bar: bool = False) -> np.ndarray:
        self.scored.append(list(pairs))
        return np.array([len(set(q.split()) & set(d.split())) / len(d.split())
                         for q, d in pairs], dtype=np.float32)
