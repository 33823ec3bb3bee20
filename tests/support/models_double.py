"""A test double of the model deployments, for the starlette app in-process: it stands in for
app.model_handles.ServeModels and records what the ingress sent to each model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from app.errors import model_not_found
from messages import (
    APIError,
    Chunk,
    EmbeddingJob,
    FinalUsage,
    ModelCard,
    Reply,
    StreamUsage,
    Usage,
)

CHAT = "org/chat-model:bf16"
EMBED = "org/embed-model:fp32"


def chunk(payload: dict[str, Any]) -> Chunk:
    """An SSE frame as the chat replica relays it, with the usage it reports."""
    usage = payload.get("usage")
    return Chunk(f"data: {json.dumps(payload)}\n\n", Usage.of(usage) if usage else None,
                 usage_only=bool(usage) and payload.get("choices") == [])


DONE = Chunk("data: [DONE]\n\n", None)


class ModelsDoubleForTests:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.stream_fails_after: int | None = None
        # What the model refuses every request with, when set (as the replica would).
        self.refusal: APIError | None = None
        # When set, a whole reply reports this much generated, then runs until cancelled.
        self.generating_until_cancelled: Usage | None = None
        self.progress_reported = asyncio.Event()

    async def cards(self) -> list[ModelCard]:
        return [
            ModelCard(id=CHAT, created=1, owned_by="o", task="chat", context_length=2048),
            ModelCard(id=EMBED, created=1, owned_by="o", task="embedding", context_length=256,
                      dimensions=8),
        ]

    async def task_of(self, model: str) -> str:
        tasks = {CHAT: "chat", EMBED: "embedding"}
        if model not in tasks:
            raise model_not_found(model)
        return tasks[model]

    async def chat(self, model: str, body: dict[str, Any],
                   progress: Callable[[Usage], None]) -> Reply:
        self.sent.append(body)
        if self.refusal is not None:
            raise self.refusal
        if self.generating_until_cancelled is not None:
            progress(self.generating_until_cancelled)
            self.progress_reported.set()
            await asyncio.Event().wait()  # until the request is cancelled
        return Reply({"object": "chat.completion", "model": model}, Usage(0))

    async def chat_stream(
        self, model: str, body: dict[str, Any], shown: StreamUsage
    ) -> AsyncIterator[Chunk | FinalUsage]:
        self.sent.append(body)
        if self.refusal is not None:
            raise self.refusal
        for i in range(3):
            if self.stream_fails_after == i:
                raise RuntimeError("engine died")
            yield chunk({"n": i})
        yield DONE

    async def embed(self, model: str, job: EmbeddingJob) -> Reply:
        self.sent.append(job)
        return Reply({"object": "list", "data": [], "model": model}, Usage(0))


def chat_body(**fields: Any) -> dict[str, Any]:
    """A minimal valid chat request body, with ``fields`` added."""
    return {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], **fields}
