"""``POST /v1/rerank`` (Scaleway's and Cohere's v1 shape) and ``POST /v2/rerank`` (Cohere's v2
shape, for Cohere's own client).

The model's replica scores every document (messages.RerankJob); here the scores are sorted,
cut to ``top_n`` and shaped for the route. An embedding model scores by cosine, a rerank model
(a cross-encoder) by its own score (docs/api.md, "Rerank").
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import Caller
from app.body import read_json, validated
from app.protocol import CohereRerankRequest, RerankRequest
from app.quota_gate import estimate_tokens
from app.services import Services, services_of
from messages import Reply, RerankJob

RERANK_TASKS = ("embedding", "rerank")


async def _request(services: Services, request: Request,
                   schema: type[RerankRequest | CohereRerankRequest]
                   ) -> tuple[Caller, RerankRequest | CohereRerankRequest, str]:
    """Who calls, their validated request and its model's task, an embedding or a rerank
    model (in this order, as for every model route: a caller without a key learns nothing
    more)."""
    who = await services.caller(request, "model")
    limits = services.limits
    req = validated(schema, await read_json(request, limits.max_body_bytes,
                                            limits.body_timeout_s))
    model = await services.resolve_model(request, req.model, RERANK_TASKS)
    return who, req.model_copy(update={"model": model}), await services.models.task_of(model)


def ranked(scores: list[float], top_n: int | None) -> list[tuple[int, float]]:
    """(index, score) pairs, highest score first (ties in the documents' order), at most
    ``top_n`` of them (all of them when ``top_n`` is more than there are)."""
    order = sorted(enumerate(scores), key=lambda pair: -pair[1])
    return order[:top_n] if top_n is not None else order


async def _scores(request: Request, schema: type[RerankRequest | CohereRerankRequest],
                  shape: Any) -> Response:
    services = services_of(request)
    who, req, task = await _request(services, request, schema)
    user = req.user if isinstance(req, RerankRequest) else None
    async with services.books(request, who, req.model, user) as books:
        texts = req.texts
        # As it will be counted: a cross-encoder reads the query with every document.
        queries = len(texts) if task == "rerank" else 1
        await books.admit(lambda: estimate_tokens(
            queries * len(req.query) + sum(len(t) for t in texts)))
        truncate = req.max_tokens_per_doc if isinstance(req, CohereRerankRequest) else None
        job = RerankJob(query=req.query, documents=texts, truncate_tokens=truncate)
        reply = await books.within_deadline(services.models.rerank(req.model, job))
        return books.reply(Reply(shape(req, reply), reply.usage))


def _v1(req: RerankRequest, reply: Reply) -> dict[str, Any]:
    texts = req.texts
    results = []
    for index, score in ranked(reply.body["scores"], req.top_n):
        result: dict[str, Any] = {"index": index, "relevance_score": score}
        if req.return_documents:
            result["document"] = {"text": texts[index]}
        results.append(result)
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": reply.body["model"],
            "results": results, "usage": reply.body["usage"]}


def _v2(req: CohereRerankRequest, reply: Reply) -> dict[str, Any]:
    results = [{"index": index, "relevance_score": score}
               for index, score in ranked(reply.body["scores"], req.top_n)]
    tokens = reply.usage.prompt_tokens
    return {"id": str(uuid.uuid4()), "results": results,
            "meta": {"api_version": {"version": "2"},
                     "billed_units": {"input_tokens": tokens},
                     "tokens": {"input_tokens": tokens, "output_tokens": 0}}}


async def rerank_v1(request: Request) -> Response:
    return await _scores(request, RerankRequest, _v1)


async def rerank_v2(request: Request) -> Response:
    return await _scores(request, CohereRerankRequest, _v2)


ROUTES = [
    Route("/v1/rerank", rerank_v1, methods=["POST"]),
    Route("/v2/rerank", rerank_v2, methods=["POST"]),
]
