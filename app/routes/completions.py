"""``POST /v1/completions``: legacy text completions on chat models, kept the books of as
chat is (docs/api.md, "Completions")."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.protocol import CompletionRequest
from app.quota_gate import estimate_tokens
from app.routes.chat import generated
from app.services import services_of


def completion_reservation(req: CompletionRequest) -> int:
    """Tokens reserved against a tokens-per-minute quota before the engine runs: the prompts
    (token ids counted as they are, text estimated) and the most every choice may generate."""
    prompt = req.prompt
    if isinstance(prompt, str):
        prompt_tokens = estimate_tokens(len(prompt))
    elif isinstance(prompt[0], str):
        prompt_tokens = sum(estimate_tokens(len(text)) for text in prompt)  # type: ignore[arg-type]
    elif isinstance(prompt[0], int):
        prompt_tokens = len(prompt)
    else:
        prompt_tokens = sum(len(ids) for ids in prompt)  # type: ignore[arg-type]
    return prompt_tokens + req.max_tokens * req.n * req.prompts


def engine_body(req: CompletionRequest) -> dict[str, Any]:
    """The validated request as the chat deployment's completion serving takes it."""
    return req.model_dump(exclude_none=True, exclude={"stream_options"})


async def completions(request: Request) -> Response:
    services = services_of(request)
    who, req = await services.model_request(request, CompletionRequest, "chat")
    body = engine_body(req)
    models = services.models
    return await generated(
        request, who, req.model, req.user, lambda: completion_reservation(req),
        whole=None if req.stream else lambda progress: models.complete(req.model, body, progress),
        stream=lambda: models.complete_stream(req.model, body, req.stream_usage))


ROUTES = [Route("/v1/completions", completions, methods=["POST"])]
