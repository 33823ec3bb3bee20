"""``POST /v1/chat/completions``."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.protocol import ChatCompletionRequest
from app.quota_gate import DEFAULT_COMPLETION_RESERVE, estimate_tokens
from app.services import services_of
from messages import FinalUsage


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
    async with services.books(request, who, req.model, req.user) as books:
        await books.admit(lambda: chat_reservation(req))
        if not req.stream:
            return books.reply(await books.within_deadline(
                services.models.chat(req.model, body, books.progress)))
        stream = services.models.chat_stream(req.model, body, req.stream_usage)
        first = await books.within_deadline(anext(stream))
        if isinstance(first, FinalUsage):
            raise TypeError("the model's stream began with its final usage")
        return books.stream(first, stream)


ROUTES = [Route("/v1/chat/completions", chat_completions, methods=["POST"])]
