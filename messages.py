"""What crosses a Serve handle between the ingress (``app/``) and the model deployments
(``deployments/``): requests, whole replies, stream items, model cards and routes, and the one
error type. A model replica imports nothing of the ingress but this module.

Replies and stream items are slotted dataclasses: a stream item is pickled once per chunk on
the replica and unpickled once at the ingress, and a slotted dataclass costs the least of the
typed options measured (docs/performance.md, "Typed messages across handles").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, model_validator

# The error table of docs/api.md ("Errors"): status -> OpenAI error type.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "overloaded_error",
}


class APIError(Exception):
    """The one error type: raised by the ingress's handlers, returned (not raised) by a model
    replica for a request it refuses. The ingress turns it into OpenAI's error envelope once,
    at the edge."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = ERROR_TYPES.get(status, "invalid_request_error")
        self.param = param
        self.code = code
        self.headers = headers or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles its positional args only; the keywords must cross a handle too.
        return (_error, (self.status, self.message, self.param, self.code, self.headers))

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _error(status: int, message: str, param: str | None, code: str | None,
           headers: dict[str, str]) -> APIError:
    return APIError(status, message, param=param, code=code, headers=headers)


# --- what a model replica answers --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a request used, as its reply reports them to the client (and the ledger)."""

    prompt_tokens: int
    completion_tokens: int = 0
    # Seconds of audio a transcription listened to (its reply's ``usage.seconds``).
    audio_seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled once per streamed chunk: positional arguments cost half of a slotted
        # dataclass's default state (docs/performance.md, "Typed messages across handles").
        if self.audio_seconds:
            return (Usage, (self.prompt_tokens, self.completion_tokens, self.audio_seconds))
        return (Usage, (self.prompt_tokens, self.completion_tokens))

    @classmethod
    def of(cls, reported: dict[str, Any]) -> Usage:
        """From the ``usage`` object of an OpenAI-shaped reply."""
        return cls(int(reported.get("prompt_tokens") or 0),
                   int(reported.get("completion_tokens") or 0))


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer: the JSON body for the client and the usage it reports."""

    body: dict[str, Any]
    usage: Usage


@dataclass(frozen=True, slots=True)
class Chunk:
    """One SSE frame of a stream, as the engine wrote it, with the cumulative usage it
    reports (None for a frame that reports none)."""

    frame: str
    usage: Usage | None
    # The frame is OpenAI's trailing usage chunk (``choices`` empty): usage and nothing else.
    usage_only: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (Chunk, (self.frame, self.usage, self.usage_only))  # see Usage.__reduce__


@dataclass(frozen=True, slots=True)
class FinalUsage:
    """A stream's final counts, for metering only: the client did not ask to see them."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class Progress:
    """What a whole (non-streamed) reply has generated so far: the ingress meters the last
    of these when the request ends before its reply (the client left, the deadline passed)."""

    usage: Usage

    def __reduce__(self) -> tuple[Any, ...]:
        return (Progress, (self.usage,))


@dataclass(frozen=True, slots=True)
class ReplicaUnavailable:
    """The replica's engine has died with nothing generated for this request: the ingress
    sends it again to another replica."""

    model: str


@dataclass(frozen=True, slots=True)
class UnexpectedFailure:
    """One request of a shared call failed on the replica for a reason that is not the
    client's (the replica logged the traceback); the others in the call are unaffected."""

    detail: str


# A chat reply; a chat stream's items (an error or ReplicaUnavailable only as the first item,
# FinalUsage only as the last); an embedding reply.
ChatOutcome = Reply | APIError | ReplicaUnavailable
StreamItem = Chunk | FinalUsage | APIError | ReplicaUnavailable
EmbeddingOutcome = Reply | APIError | UnexpectedFailure


# --- what the ingress sends --------------------------------------------------------------


class ChatRequestBody(dict[str, Any]):
    """A validated chat request in the OpenAI shape vLLM's serving layer takes. A plain dict
    that also shows its ``messages`` as an attribute: Serve's prefix-aware request router
    (``PrefixCacheAffinityRouter``) reads the prompt from there."""

    @property
    def messages(self) -> Any:
        return self.get("messages")


class CompletionRequestBody(dict[str, Any]):
    """A validated legacy completion request, as :class:`ChatRequestBody` is for chat: the
    prompt router reads its ``prompt``."""

    @property
    def prompt(self) -> Any:
        return self.get("prompt")


@dataclass(frozen=True, slots=True)
class StreamUsage:
    """Where a chat stream shows its usage (docs/api.md, "Streaming and usage")."""

    every_chunk: bool = True  # cumulative usage on every chunk (this service's default)
    trailing: bool = False  # OpenAI's trailing usage-only chunk (``include_usage``)


@dataclass(frozen=True, slots=True)
class EmbeddingJob:
    """One embedding request's work: its texts and how to return their vectors."""

    texts: list[str]
    single: bool  # ``input`` was one string, not a list (errors say "input", not "input[0]")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    # -1: truncate to the model's maximum; N: to at most N tokens; None: too long is a 400.
    truncate_prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class RerankJob:
    """One rerank request's work: a query and the documents to score against it. The reply's
    body is ``{"model", "scores": [one per document, in their order], "usage"}``; the ingress
    sorts, cuts to ``top_n`` and shapes it (v1 or Cohere's v2)."""

    query: str
    documents: list[str]
    # -1: truncate to the model's maximum; N: each document to at most N tokens; None: too
    # long is a 400 (unless the model's config allows truncation).
    truncate_tokens: int | None = None

    @property
    def texts(self) -> list[str]:
        """What an embedding model encodes: the query once, then each document."""
        return [self.query, *self.documents]


# An embedding model's replica takes both kinds of job in one call (app/coalescing.py).
EmbeddingWork = EmbeddingJob | RerankJob


@dataclass(frozen=True, slots=True)
class TranscriptionJob:
    """One transcription request's work: the uploaded file as sent (the replica decodes it)
    and the options of OpenAI's form. The reply's body is the whole transcript (text,
    language, duration, segments, words); the ingress shapes it into the asked format."""

    audio: bytes
    filename: str
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False


# --- what the ingress knows of each model ------------------------------------------------


Task = Literal["chat", "embedding", "rerank", "transcription"]

# The routes a model of each task serves (its card's ``routes``, docs/api.md "Models").
ROUTES_OF_TASK: dict[str, list[str]] = {
    "chat": ["/v1/chat/completions", "/v1/completions", "/v1/responses"],
    "embedding": ["/v1/embeddings", "/v1/rerank", "/v2/rerank"],
    "rerank": ["/v1/rerank", "/v2/rerank"],
    "transcription": ["/v1/audio/transcriptions"],
}


class ModelCard(BaseModel):
    """A model as ``GET /v1/models`` shows it; a replica describes its model with one."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    task: Task  # extension
    # extension; None only for an end-of-life model, which runs no more
    context_length: int | None = None
    dimensions: int | None = None  # extension: embeddings only
    routes: list[str] = []  # extension: filled in from the task when not given
    # extension: the lifecycle (app/model_catalog.py), dates as ISO 8601 days
    status: Literal["preview", "active", "deprecated", "eol"] = "active"
    deprecated_at: str | None = None
    eol_at: str | None = None
    replacement: str | None = None
    aliases: list[str] | None = None

    @model_validator(mode="after")
    def _routes_of_task(self) -> ModelCard:
        if not self.routes:
            self.routes = list(ROUTES_OF_TASK[self.task])
        return self


@dataclass(frozen=True)
class ModelRoute:
    """Where the ingress sends one public model's requests, and what the config says of it."""

    task: Task
    handle: Any  # the Serve handle of the model's deployment
    # Longest wait for a replica to take a request before a 503 (None: no limit).
    wait_for_replica_s: float | None
    # It may have no replica at all: its card then comes from the config (None if the config
    # cannot tell it).
    scales_to_zero: bool
    card: ModelCard | None
    # Embeddings: concurrent requests go in at most this many calls at once (None: each its own).
    ingress_calls_in_flight: int | None = None
    max_queued_requests: int = -1
