"""An embedding model that encodes inside the ingress replica (``embedding.placement:
ingress``), for a model small enough to share its process.

Through its own deployment, a single-sentence request costs the ingress a Serve call (routing,
pickling, the actor hop) and the model's replica the other side of it: on a 2-core machine
more CPU than the encoding itself (docs/performance.md, "Embeddings against Infinity"). Here
the request goes straight to the same :class:`deployments.embeddings.EmbeddingModel` the
replica runs, with the same batching, counting and refusals; what the route does around it
(auth, quotas, metering, the deadline) is the same whichever placement serves it.

What the model's own queue did, a bound does here: beyond ``max_requests`` requests at once
(encoding or waiting for a batch) a new one is a fast 503 with Retry-After, the same answer
as a full replica queue.
"""

from __future__ import annotations

from typing import Any

from app.errors import overloaded
from messages import EmbeddingOutcome, EmbeddingWork, ModelCard


class InIngressModel:
    def __init__(self, model: str, spec: dict[str, Any], max_requests: int) -> None:
        # Imported here: an ingress whose models all have replicas never loads torch.
        from deployments.embeddings import EmbeddingModel

        self._model = model
        self._engine = EmbeddingModel(spec, shares_process=True)
        self._max_requests = max_requests
        self._requests = 0

    async def describe(self) -> ModelCard:
        return await self._engine.describe()

    async def outcome(self, job: EmbeddingWork) -> EmbeddingOutcome:
        """The request's reply, refusal or failure, as a replica would give it. Cancelled
        (the client left, the deadline passed): its inputs leave the batches not started."""
        if 0 <= self._max_requests <= self._requests:
            raise overloaded(self._model)
        self._requests += 1
        try:
            return await self._engine.outcome(job)
        finally:
            self._requests -= 1

    async def check_health(self) -> None:
        """Raises if the model can no longer encode: Serve then replaces the ingress
        replica, as it would the model's own."""
        await self._engine.check_health()
