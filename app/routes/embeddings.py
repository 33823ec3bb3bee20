"""``POST /v1/embeddings``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.protocol import EmbeddingRequest
from app.quota_gate import estimate_tokens
from app.services import services_of
from messages import EmbeddingJob


def embedding_job(req: EmbeddingRequest) -> EmbeddingJob:
    return EmbeddingJob(texts=req.texts, single=isinstance(req.input, str),
                        encoding_format=req.encoding_format, dimensions=req.dimensions,
                        truncate_prompt_tokens=req.truncate_prompt_tokens)


async def embeddings(request: Request) -> Response:
    services = services_of(request)
    who, req = await services.model_request(request, EmbeddingRequest, "embedding")
    async with services.books(request, who, req.model, req.user) as books:
        await books.admit(lambda: estimate_tokens(sum(len(t) for t in req.texts)))
        job = embedding_job(req)
        return books.reply(await books.within_deadline(services.models.embed(req.model, job)))


ROUTES = [Route("/v1/embeddings", embeddings, methods=["POST"])]
