"""``POST /v1/chat/completions``, and how a chat model's answer is given, whole or streamed,
with its books kept (legacy completions too)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import Caller
from app.protocol import ChatCompletionRequest
from app.quota_gate import DEFAULT_COMPLETION_RESERVE, estimate_tokens
from app.services import services_of
from messages import Chunk, FinalUsage, Reply, Usage


def chat_reservation(req: ChatCompletionRequest) -> int:
    """Tokens reserved against a tokens-per-minute quota before the engine runs: an estimate
    of the prompt plus the most the completion may use; corrected to actual usage after.
    It serialises the messages, so it is computed only for a project with a token limit."""
    prompt = json.dumps([m.model_dump(exclude_none=True) for m in req.messages])
    if req.tools:
        prompt += json.dumps([t.model_dump(exclude_none=True) for t in req.tools])
    completion = req.max_completion_tokens or req.max_tokens or DEFAULT_COMPLETION_RESERVE
    return estimate_tokens(len(prompt)) + completion * req.n


def engine_body(req: ChatCompletionRequest) -> dict[str, Any]:
    """The validated request as the chat deployment takes it (defaults made explicit)."""
    return req.model_dump(exclude_none=True, by_alias=True, exclude={"stream_options", "store"})


async def chat_completions(request: Request) -> Response:
    services = services_of(request)
    who, req = await services.model_request(request, ChatCompletionRequest, "chat")
    body = engine_body(req)
    models = services.models
    return await generated(
        request, who, req.model, req.user, lambda: chat_reservation(req),
        whole=None if req.stream else lambda progress: models.chat(req.model, body, progress),
        stream=lambda: models.chat_stream(req.model, body, req.stream_usage))


async def generated(request: Request, who: Caller, model: str, user: str | None,
                    reservation: Callable[[], int],
                    whole: Callable[[Callable[[Usage], None]], Awaitable[Reply]] | None,
                    stream: Callable[[], AsyncIterator[Chunk | FinalUsage]]) -> Response:
    """A chat model's answer with its books kept: the ``whole`` reply (its progress metered
    if it ends early), or, without one, the ``stream``. Chat and legacy completions alike."""
    async with services_of(request).books(request, who, model, user) as books:
        await books.admit(reservation)
        if whole is not None:
            return books.reply(await books.within_deadline(whole(books.progress)))
        chunks = stream()
        first = await books.within_deadline(anext(chunks))
        if isinstance(first, FinalUsage):
            raise TypeError("the model's stream began with its final usage")
        return books.stream(first, chunks)


ROUTES = [Route("/v1/chat/completions", chat_completions, methods=["POST"])]
