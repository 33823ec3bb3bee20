"""Rerank model deployment: a sentence-transformers ``CrossEncoder`` scores each (query,
document) pair itself, with dynamic batching.

Each pair is one item of a batch (deployments/batching.py), so pairs from concurrent requests
are scored together, as texts are on the embedding replica. An over-long pair is refused, never
silently truncated, unless the model's config or the request (``max_tokens_per_doc``) asks for
truncation (docs/api.md, "Rerank").
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from deployments.batching import ContinuousBatcher
from deployments.builtin_models import resolve
from deployments.config import ModelSpec
from deployments.embeddings import HEALTHY_IF_ENCODED_WITHIN_S, encode_threads, rerank_body
from launch.cpu_layout import use_all_cpus
from messages import APIError, ModelCard, Reply, RerankJob, UnexpectedFailure, Usage

logger = logging.getLogger("ray.serve")


@serve.deployment
class RerankDeployment:
    def __init__(self, spec: dict[str, Any]) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        cpus = use_all_cpus()
        self.spec = ModelSpec.model_validate(spec)
        assert self.spec.rerank is not None
        settings = self.spec.rerank
        threads = encode_threads(settings.cpu_threads, cpus)
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = CrossEncoder(resolve(self.spec.source), device=settings.device)
        # Counting runs in a thread of its own while predict() tokenizes in its thread; a
        # fast tokenizer's truncation is state each call sets (as on the embedding replica).
        self.tokenizer = copy.deepcopy(self.model.tokenizer)
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tokenizer")
        self.max_tokens: int = self.model.max_seq_length or self.tokenizer.model_max_length
        if settings.max_seq_length is not None and settings.max_seq_length != self.max_tokens:
            raise ValueError(f"{self.spec.id}: the config says rerank.max_seq_length "
                             f"{settings.max_seq_length}, the model has {self.max_tokens}")
        self.truncate = settings.truncate
        self.created = int(time.time())
        self._last_scored = time.monotonic()
        self._scoring = asyncio.Lock()
        self._batcher: ContinuousBatcher[tuple[str, str], float] = ContinuousBatcher(
            self._score, settings.max_batch_size, settings.batch_wait_timeout_s)

    async def describe(self) -> ModelCard:
        return ModelCard(id=self.spec.id, created=self.created, owned_by=self.spec.owned_by,
                         task="rerank", context_length=self.max_tokens)

    async def _score(self, pairs: list[tuple[str, str]]) -> list[float]:
        # predict() holds the CPU; a thread keeps the replica answering health checks.
        # The model's own activation (a sigmoid for one label) gives its own score.
        async with self._scoring:
            scores = await asyncio.to_thread(self.model.predict, pairs, convert_to_numpy=True,
                                             show_progress_bar=False)
        self._last_scored = time.monotonic()
        return [float(s) for s in scores]

    async def check_health(self) -> None:
        """As the embedding replica's: an idle replica must still score one pair."""
        if time.monotonic() - self._last_scored < HEALTHY_IF_ENCODED_WITHIN_S:
            return
        await self._score([("health", "health")])

    def _pair_counts(self, query: str, documents: list[str]) -> list[int]:
        """Tokens of each (query, document) pair as the model reads it, special tokens
        included."""
        encoded = self.tokenizer([query] * len(documents), documents, add_special_tokens=True,
                                 truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _doc_counts(self, documents: list[str]) -> list[int]:
        encoded = self.tokenizer(documents, add_special_tokens=False, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _truncated(self, documents: list[str], counts: list[int], limit: int) -> list[str]:
        return [str(self.tokenizer.decode(
                    self.tokenizer(d, add_special_tokens=False)["input_ids"][:limit]))
                if c > limit else d for d, c in zip(documents, counts, strict=True)]

    async def rerank(self, job: RerankJob) -> Reply | APIError | UnexpectedFailure:
        try:
            return await self._rerank(job)
        except Exception as exc:
            logger.exception("rerank request failed")
            return UnexpectedFailure(repr(exc))

    async def _rerank(self, job: RerankJob) -> Reply | APIError:
        loop = asyncio.get_running_loop()
        documents = job.documents
        if job.truncate_tokens is not None and job.truncate_tokens != -1:
            # The client asked for each document cut to at most N tokens.
            doc_counts = await loop.run_in_executor(self._tokenizer_thread, self._doc_counts,
                                                    documents)
            documents = await loop.run_in_executor(
                self._tokenizer_thread, self._truncated, documents, doc_counts,
                job.truncate_tokens)
        counts = await loop.run_in_executor(self._tokenizer_thread, self._pair_counts,
                                            job.query, documents)
        # -1 (to the model's maximum) or the config's truncate: predict() cuts the pair.
        truncating = self.truncate or job.truncate_tokens == -1
        if not truncating:
            for index, count in enumerate(counts):
                if count > self.max_tokens:
                    return APIError(
                        400, f"query and documents[{index}] together are {count} tokens long; "
                        f"{self.spec.id} takes at most {self.max_tokens} tokens per "
                        "(query, document) pair.", param="documents")
        scores = await self._batcher.submit_all([(job.query, d) for d in documents])
        # The query is read with every document: it is counted once per pair.
        usage = Usage(sum(min(c, self.max_tokens) for c in counts))
        return Reply(rerank_body(self.spec.id, scores, usage), usage)
