"""Embedding model deployment: sentence-transformers with dynamic batching.

Each input text is one item of a batch (deployments/batching.py), so texts from concurrent
requests are encoded together (docs/api.md, "Embeddings"). Over-long inputs are refused, never
silently truncated, unless the model's config allows truncation.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from ray import serve

from deployments import metrics
from deployments.batching import ContinuousBatcher
from deployments.builtin_models import resolve
from deployments.config import ModelSpec
from launch.cpu_layout import model_cpus, use_all_cpus
from messages import (
    APIError,
    EmbeddingJob,
    EmbeddingOutcome,
    EmbeddingWork,
    ModelCard,
    Reply,
    RerankJob,
    UnexpectedFailure,
    Usage,
)

logger = logging.getLogger("ray.serve")
T = TypeVar("T")

# A batch encoded this recently proves the model works; no extra encode for the health check.
HEALTHY_IF_ENCODED_WITHIN_S = 30.0


def shorten(vector: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first ``dimensions`` components and renormalise (OpenAI's ``dimensions``)."""
    if dimensions is None or dimensions == vector.shape[-1]:
        return vector
    head = vector[:dimensions]
    norm = float(np.linalg.norm(head))
    return head / norm if norm > 0 else head


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    # tolist(): the same Python floats as float() on each float32 component, in one C loop.
    return list(vector.astype(np.float32).tolist())


def encode_threads(configured: int | None, layout_cpus: set[int] | None) -> int | None:
    """torch's threads for encoding on CPU; None leaves Ray's choice. Ray starts a replica
    with OMP_NUM_THREADS = its num_cpus (1 for a fraction): under the CPU layout, which gives
    the replica every core, torch would still encode on one (docs/performance.md, "The
    embedding replica's batcher and threads")."""
    if configured is not None:
        return configured
    return len(layout_cpus) if layout_cpus else None


class EmbeddingModel:
    """One embedding model with its batcher, wherever it runs: in a replica of its own
    (:class:`EmbeddingDeployment`, the default) or inside each ingress replica
    (``embedding.placement: ingress``, app/in_ingress.py).

    ``shares_process``: the model lives in a process that also serves HTTP (the ingress). Its
    encoding then runs in one thread of its own that alone takes the model's CPUs under the
    CPU layout, so the event loop stays on the stack's cores, off the chat engine's."""

    def __init__(self, spec: dict[str, Any], shares_process: bool = False) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.spec = ModelSpec.model_validate(spec)
        assert self.spec.embedding is not None
        settings = self.spec.embedding
        # Model compute: the chat engine's cores too (launch/cpu_layout.py).
        cpus = model_cpus() if shares_process else use_all_cpus()
        threads = encode_threads(settings.cpu_threads, cpus)

        def encoding_thread() -> None:
            if shares_process and cpus:
                os.sched_setaffinity(0, cpus)  # 0: this thread only (Linux)
            if threads is not None:
                # torch's OpenMP team belongs to the thread that runs the model: set here,
                # on that thread, as well as for the process.
                torch.set_num_threads(threads)

        if threads is not None:
            torch.set_num_threads(threads)
        # One thread runs the model: the only thread that needs the model's CPUs, and one
        # encode at a time (see the lock below).
        self._encode_thread = ThreadPoolExecutor(1, thread_name_prefix="encode",
                                                 initializer=encoding_thread)
        self.model = SentenceTransformer(resolve(self.spec.source), device=settings.device)
        # Counting and truncating run in a thread of their own while encode() tokenizes in
        # its thread; a fast tokenizer's padding and truncation are state each call sets, so
        # sharing one makes encode() fail under load. Counting has its own copy.
        self.tokenizer = copy.deepcopy(self.model.tokenizer)
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tokenizer")
        self.max_tokens: int = self.model.max_seq_length or self.tokenizer.model_max_length
        self.dimensions: int = self.model.get_embedding_dimension() or 0
        # What the config told GET /v1/models while no replica ran must be what is served.
        for name, said, actual in (("dimensions", settings.dimensions, self.dimensions),
                                   ("max_seq_length", settings.max_seq_length, self.max_tokens)):
            if said is not None and said != actual:
                raise ValueError(f"{self.spec.id}: the config says embedding.{name} {said}, "
                                 f"the model has {actual}")
        self.truncate = settings.truncate
        self.created = int(time.time())
        self._last_encoded = time.monotonic()
        # One encode at a time: the model's tokenizer is state its calls set (see above).
        self._encoding = asyncio.Lock()
        # Texts from concurrent requests encode together (deployments/batching.py).
        self._batcher: ContinuousBatcher[tuple[str, float], np.ndarray] = ContinuousBatcher(
            self._encode, settings.max_batch_size, settings.batch_wait_timeout_s)

    async def describe(self) -> ModelCard:
        return ModelCard(id=self.spec.id, created=self.created, owned_by=self.spec.owned_by,
                         task="embedding", context_length=self.max_tokens,
                         dimensions=self.dimensions)

    async def _encode(self, items: list[tuple[str, float]]) -> list[np.ndarray]:
        # Each item is (text, when it was queued).
        started = time.monotonic()
        tags = {"model": self.spec.id}
        metrics.embedding_batch_size.observe(len(items), tags=tags)
        for _, queued in items:
            metrics.embedding_queue_wait.observe(started - queued, tags=tags)
        # encode() holds the CPU; a thread keeps the replica answering health checks.
        async with self._encoding:
            vectors = await self._in_encode_thread(functools.partial(
                self.model.encode, [text for text, _ in items], normalize_embeddings=True,
                convert_to_numpy=True,
            ))
        self._last_encoded = time.monotonic()
        return list(vectors)

    async def _in_encode_thread(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._encode_thread, work)

    async def check_health(self) -> None:
        """Serve calls this periodically and replaces the replica when it raises: a replica
        that has not encoded anything lately must still be able to encode one word."""
        if time.monotonic() - self._last_encoded < HEALTHY_IF_ENCODED_WITHIN_S:
            return
        async with self._encoding:
            await self._in_encode_thread(functools.partial(
                self.model.encode, ["health"], convert_to_numpy=True))
        self._last_encoded = time.monotonic()

    def _token_counts(self, texts: list[str]) -> list[int]:
        encoded = self.tokenizer(texts, add_special_tokens=True, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    async def _tokenizing(self, work: Callable[..., T], *args: Any) -> T:
        """Counting and truncating run in the tokenizer's own thread: a large request's never
        stalls the event loop that answers every other request (and health checks), and
        one thread keeps the tokenizer's per-call state to one call at a time."""
        return await asyncio.get_running_loop().run_in_executor(self._tokenizer_thread, work,
                                                                *args)

    def _all_truncated(self, texts: list[str], counts: list[int], limit: int) -> list[str]:
        return [self._truncated(t, limit) if c > limit else t
                for t, c in zip(texts, counts, strict=True)]

    def _truncated(self, text: str, limit: int) -> str:
        """``text`` cut to at most ``limit`` tokens, special tokens included."""
        special = len(self.tokenizer("", add_special_tokens=True)["input_ids"])
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return str(self.tokenizer.decode(ids[: max(1, limit - special)]))

    async def embed_many(self, jobs: list[EmbeddingWork]) -> list[EmbeddingOutcome]:
        """Several requests in one call (the ingress coalesces them): one outcome each.
        Rerank jobs come the same way: their texts join the same batches."""
        return list(await asyncio.gather(*(self.outcome(job) for job in jobs)))

    async def outcome(self, job: EmbeddingWork) -> EmbeddingOutcome:
        """A request that fails unexpectedly fails alone, as :class:`UnexpectedFailure`; the
        traceback goes to this replica's log. (A refusal is an APIError returned, not
        raised: it is the client's answer.)"""
        try:
            if isinstance(job, RerankJob):
                return await self.rerank(job)
            return await self.embed(job)
        except Exception as exc:
            logger.exception("embedding request failed")
            return UnexpectedFailure(repr(exc))

    async def rerank(self, job: RerankJob) -> Reply | APIError:
        """Each document's score: the cosine of its embedding and the query's (both
        normalised, so their dot product). Scored here rather than in the ingress: only one
        number per document crosses the handle instead of a vector, and the over-long check
        names ``query`` or ``documents[i]``, not an embedding input. The query is encoded
        (and counted) once."""
        texts = job.texts
        counts = await self._tokenizing(self._token_counts, texts)
        if job.truncate_tokens is not None:  # the client asked for truncation
            asked = job.truncate_tokens
            limit = self.max_tokens if asked == -1 else min(asked, self.max_tokens)
            # The query is never cut: only documents are (Cohere's max_tokens_per_doc).
            documents = await self._tokenizing(self._all_truncated, texts[1:], counts[1:],
                                               limit)
            texts = [texts[0], *documents]
            counts = [counts[0], *(min(c, limit) for c in counts[1:])]
        if not self.truncate:
            for index, count in enumerate(counts):
                if count > self.max_tokens:
                    where = "query" if index == 0 else f"documents[{index - 1}]"
                    return APIError(
                        400, f"{where} is {count} tokens long; {self.spec.id} takes at most "
                        f"{self.max_tokens} tokens per text.",
                        param="query" if index == 0 else "documents")
        queued = time.monotonic()
        vectors = await self._batcher.submit_all([(text, queued) for text in texts])
        query = vectors[0]
        scores = [float(np.dot(query, v)) for v in vectors[1:]]
        usage = Usage(sum(min(c, self.max_tokens) for c in counts))
        return Reply(rerank_body(self.spec.id, scores, usage), usage)

    async def embed(self, job: EmbeddingJob) -> Reply | APIError:
        texts = job.texts
        if job.dimensions is not None and job.dimensions > self.dimensions:
            return APIError(
                400, f"'dimensions' must be at most {self.dimensions} for {self.spec.id}, "
                f"got {job.dimensions}.", param="dimensions")
        counts = await self._tokenizing(self._token_counts, texts)
        if job.truncate_prompt_tokens is not None:  # the client asked for truncation
            asked = job.truncate_prompt_tokens
            limit = self.max_tokens if asked == -1 else min(asked, self.max_tokens)
            texts = await self._tokenizing(self._all_truncated, texts, counts, limit)
            counts = [min(c, limit) for c in counts]
        elif not self.truncate:
            for index, count in enumerate(counts):
                if count > self.max_tokens:
                    where = "input" if job.single else f"input[{index}]"
                    return APIError(
                        400, f"{where} is {count} tokens long; {self.spec.id} takes at most "
                        f"{self.max_tokens} tokens per input.", param="input")
        queued = time.monotonic()
        vectors = await self._batcher.submit_all([(text, queued) for text in texts])
        usage = Usage(sum(min(c, self.max_tokens) for c in counts))
        return Reply(
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": encode_vector(shorten(v, job.dimensions),
                                                   job.encoding_format),
                    }
                    for i, v in enumerate(vectors)
                ],
                "model": self.spec.id,
                "usage": {"prompt_tokens": usage.prompt_tokens,
                          "total_tokens": usage.total_tokens},
            },
            usage,
        )


@serve.deployment
class EmbeddingDeployment(EmbeddingModel):
    """The model in replicas of its own, reached from the ingress through a Serve handle: the
    default, and the only placement for a model on a GPU or one that autoscales."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)


def rerank_body(model: str, scores: list[float], usage: Usage) -> dict[str, Any]:
    """A rerank reply as a replica gives it to the ingress (messages.RerankJob)."""
    return {"model": model, "scores": scores,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}}
