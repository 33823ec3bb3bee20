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
    RerankJob,
    StreamUsage,
    TranscriptionJob,
    Usage,
)

CHAT = "org/chat-model:bf16"
EMBED = "org/embed-model:fp32"
TRANSCRIBE = "org/speech-model:int8"
RERANK = "org/rerank-model:fp32"
# What the double "hears" in any file: two segments, with words.
TRANSCRIPT = {
    "text": "Hello there. General Kenobi.", "language": "en", "duration": 3.25,
    "segments": [
        {"id": 0, "seek": 0, "start": 0.0, "end": 1.5, "text": " Hello there.", "tokens": [1],
         "temperature": 0.0, "avg_logprob": -0.1, "compression_ratio": 1.0,
         "no_speech_prob": 0.0},
        {"id": 1, "seek": 0, "start": 1.5, "end": 3.25, "text": " General Kenobi.",
         "tokens": [2], "temperature": 0.0, "avg_logprob": -0.1, "compression_ratio": 1.0,
         "no_speech_prob": 0.0},
    ],
    "words": [{"word": "Hello", "start": 0.0, "end": 0.6}, {"word": "there.", "start": 0.6,
                                                            "end": 1.5}],
}


def chunk(payload: dict[str, Any]) -> Chunk:
    """An SSE frame as the chat replica relays it, with the usage it reports."""
    usage = payload.get("usage")
    return Chunk(f"data: {json.dumps(payload)}\n\n", Usage.of(usage) if usage else None,
                 usage_only=bool(usage) and payload.get("choices") == [])


DONE = Chunk("data: [DONE]\n\n", None)


PROMPT_TOKENS = 7  # what a chat reply of ``chat_message`` reports
COMPLETION_TOKENS = 5


def _deltas(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message as the chat stream's deltas: its text two characters at a time, then each
    tool call, its name first and its arguments in two halves."""
    text = message.get("content") or ""
    deltas: list[dict[str, Any]] = [{"content": text[i:i + 2]} for i in range(0, len(text), 2)]
    for index, call in enumerate(message.get("tool_calls") or []):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        deltas.append({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"],
                                                    "arguments": arguments[:half]}}]})
        deltas.append({"tool_calls": [{"index": index,
                                       "function": {"arguments": arguments[half:]}}]})
    return deltas


class ModelsDoubleForTests:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.stream_fails_after: int | None = None
        # What the model refuses every request with, when set (as the replica would).
        self.refusal: APIError | None = None
        # When set, a whole reply reports this much generated, then runs until cancelled.
        self.generating_until_cancelled: Usage | None = None
        self.progress_reported = asyncio.Event()
        # When set, the chat reply's message and finish reason (whole or streamed): a
        # reply of OpenAI's chat shape, for the routes that read it (Responses).
        self.chat_message: dict[str, Any] | None = None
        self.finish_reason = "stop"

    async def cards(self) -> list[ModelCard]:
        return [
            ModelCard(id=CHAT, created=1, owned_by="o", task="chat", context_length=2048),
            ModelCard(id=EMBED, created=1, owned_by="o", task="embedding", context_length=256,
                      dimensions=8),
            ModelCard(id=TRANSCRIBE, created=1, owned_by="o", task="transcription",
                      context_length=448),
            ModelCard(id=RERANK, created=1, owned_by="o", task="rerank", context_length=512),
        ]

    async def task_of(self, model: str) -> str:
        tasks = {CHAT: "chat", EMBED: "embedding", TRANSCRIBE: "transcription",
                 RERANK: "rerank"}
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
        if self.chat_message is not None:
            usage = Usage(PROMPT_TOKENS, COMPLETION_TOKENS)
            return Reply({"object": "chat.completion", "model": model, "choices": [
                {"index": 0, "message": self.chat_message,
                 "finish_reason": self.finish_reason}]}, usage)
        return Reply({"object": "chat.completion", "model": model}, Usage(0))

    async def chat_stream(
        self, model: str, body: dict[str, Any], shown: StreamUsage
    ) -> AsyncIterator[Chunk | FinalUsage]:
        self.sent.append(body)
        if self.refusal is not None:
            raise self.refusal
        if self.chat_message is not None:
            for i, delta in enumerate(_deltas(self.chat_message)):
                if self.stream_fails_after == i:
                    raise RuntimeError("engine died")
                yield chunk({"choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                             "usage": {"prompt_tokens": PROMPT_TOKENS,
                                       "completion_tokens": i + 1}})
            yield chunk({"choices": [{"index": 0, "delta": {},
                                      "finish_reason": self.finish_reason}],
                         "usage": {"prompt_tokens": PROMPT_TOKENS,
                                   "completion_tokens": COMPLETION_TOKENS}})
            yield DONE
            return
        for i in range(3):
            if self.stream_fails_after == i:
                raise RuntimeError("engine died")
            yield chunk({"n": i})
        yield DONE

    async def complete(self, model: str, body: dict[str, Any],
                       progress: Callable[[Usage], None]) -> Reply:
        """As :meth:`chat`: the ingress's books are the same for both."""
        reply = await self.chat(model, body, progress)
        return Reply({**reply.body, "object": "text_completion"}, reply.usage)

    def complete_stream(
        self, model: str, body: dict[str, Any], shown: StreamUsage
    ) -> AsyncIterator[Chunk | FinalUsage]:
        return self.chat_stream(model, body, shown)

    async def embed(self, model: str, job: EmbeddingJob) -> Reply:
        self.sent.append(job)
        return Reply({"object": "list", "data": [], "model": model}, Usage(0))

    async def rerank(self, model: str, job: RerankJob) -> Reply:
        """A document's score is the share of its words that are in the query; a token per
        word of the query and of each document."""
        self.sent.append(job)
        if self.refusal is not None:
            raise self.refusal
        query = set(job.query.split())
        scores = [len(query & set(d.split())) / len(d.split()) for d in job.documents]
        tokens = len(job.query.split()) + sum(len(d.split()) for d in job.documents)
        return Reply({"model": model, "scores": scores,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                     Usage(tokens))

    async def transcribe(self, model: str, job: TranscriptionJob) -> Reply:
        """The same transcript for any file, as the replica shapes it (words only when
        asked)."""
        self.sent.append(job)
        if self.refusal is not None:
            raise self.refusal
        body = {k: v for k, v in TRANSCRIPT.items() if k != "words" or job.word_timestamps}
        return Reply(body, Usage(0, 0, audio_seconds=float(TRANSCRIPT["duration"])))


def completion_body(**fields: Any) -> dict[str, Any]:
    """A minimal valid legacy completion body, with ``fields`` added."""
    return {"model": CHAT, "prompt": "Once upon a time", **fields}


def chat_body(**fields: Any) -> dict[str, Any]:
    """A minimal valid chat request body, with ``fields`` added."""
    return {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], **fields}
