"""OpenAI's Responses API (docs/api.md, "Responses"): ``POST /v1/responses`` served by the
chat deployments through the chat path (so quotas, metering, cancellation and the metering
of dropped requests are chat's), and the stored responses, kept per project by the control
plane so that every ingress replica reads and continues the same conversations."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.auth import Caller
from app.body import validated
from app.errors import APIError, bad_request
from app.protocol import ResponseItemsQuery, ResponsesRequest
from app.response_events import ResponseEvents
from app.responses import (
    Item,
    chat_messages,
    chat_request,
    input_items,
    new_id,
    now,
    output_items,
    reservation,
    response_object,
    status_of,
    usage_object,
)
from app.routes.chat import engine_body
from app.services import Services, services_of
from app.sse import close
from messages import Chunk, FinalUsage, StreamUsage, Usage

# A streamed response's chat stream reports its usage on every chunk: the events carry it
# only on the last, but the relay meters whatever the client had when it left.
EVERY_CHUNK = StreamUsage(every_chunk=True, trailing=False)


def not_found(response_id: str, param: str | None = None) -> APIError:
    # The same for an id of another project: a key learns nothing of other projects' ids.
    return APIError(404, f"No response with id '{response_id}' found.", param=param)


async def create_response(request: Request) -> Response:
    services = services_of(request)
    who, req = await services.model_request(request, ResponsesRequest, "chat")
    history = await _conversation(services, who, req.previous_response_id)
    items = input_items(req)
    chat = chat_request(req, chat_messages(req.instructions, history + items))
    body = engine_body(chat)
    response = response_object(new_id("resp"), now(), req, status="in_progress", output=[],
                               usage=None)

    async def keep(final: dict[str, Any]) -> None:
        if req.store:
            await _store(services, who, final, items)

    async with services.books(request, who, req.model, req.user) as books:
        await books.admit(lambda: reservation(chat))
        if not req.stream:
            reply = await books.within_deadline(
                services.models.chat(req.model, body, books.progress))
            choice = reply.body["choices"][0]
            response["output"] = output_items(choice["message"], choice["finish_reason"])
            response["status"] = status_of(choice["finish_reason"])
            if response["status"] == "incomplete":
                response["incomplete_details"] = {"reason": "max_output_tokens"}
            response["usage"] = usage_object(reply.usage)
            answered = books.respond(reply.usage, JSONResponse(response))
            await keep(response)
            return answered
        events = _events(services.models.chat_stream(req.model, body, EVERY_CHUNK),
                         ResponseEvents(response), keep)
        first = await books.within_deadline(anext(events))
        assert isinstance(first, Chunk)
        return books.stream(first, events)


async def _conversation(services: Services, who: Caller, previous: str | None) -> list[Item]:
    """The items of the stored conversation ``previous`` ends, oldest first: each turn's
    input items and output items, function calls and their outputs included."""
    if previous is None:
        return []
    turns = await services.control_plane.conversation(who.project_id, previous)
    if turns is None:
        raise not_found(previous, param="previous_response_id")
    items: list[Item] = []
    for inputs, response in turns:
        items += json.loads(inputs)
        items += json.loads(response)["output"]
    return items


async def _store(services: Services, who: Caller, response: dict[str, Any],
                 items: list[Item]) -> None:
    created = int(response["created_at"])
    await services.control_plane.store_response(who.project_id, {
        "id": response["id"], "created_at": created,
        "expires_at": created + int(services.limits.responses_retention_s),
        "previous_response_id": response["previous_response_id"],
        "response": json.dumps(response, ensure_ascii=False, separators=(",", ":")),
        "input_items": json.dumps(items, ensure_ascii=False, separators=(",", ":")),
    })


async def _events(chunks: AsyncIterator[Chunk | FinalUsage], events: ResponseEvents,
                  keep: Any) -> AsyncGenerator[Chunk | FinalUsage]:
    """The chat stream as event frames. The first frame waits for the chat stream's first
    chunk, so that the model's refusal (a prompt too long, ...) is still the request's 4xx;
    the last is the closing event, after the response is stored."""
    usage: Usage | None = None
    opening = events.start()
    try:
        async for item in chunks:
            if isinstance(item, FinalUsage):
                usage = item.usage
                yield item
                continue
            usage = item.usage or usage
            payload = item.frame.removeprefix("data: ").strip()
            frames = events.chunk(json.loads(payload)) if payload.startswith("{") else ""
            if opening or frames:
                yield Chunk(opening + frames, usage)
                opening = ""
        closing = events.finish()
        events.response["usage"] = usage_object(usage or Usage(0))
        await keep(events.response)
        yield Chunk(opening + closing + events.complete(), usage)
    finally:
        await close(chunks)  # the client left: the engine's request is aborted


async def retrieve_response(request: Request) -> Response:
    services = services_of(request)
    who = await services.caller(request, "model")
    _no_query(request)
    response_id = request.path_params["response_id"]
    stored = await services.control_plane.stored_response(who.project_id, response_id)
    if stored is None:
        raise not_found(response_id)
    return Response(stored[0], media_type="application/json")


async def delete_response(request: Request) -> Response:
    services = services_of(request)
    who = await services.caller(request, "model")
    _no_query(request)
    response_id = request.path_params["response_id"]
    if not await services.control_plane.delete_response(who.project_id, response_id):
        raise not_found(response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: Request) -> Response:
    services = services_of(request)
    who = await services.caller(request, "model")
    query: dict[str, Any] = dict(request.query_params)
    if "limit" in query:
        if not query["limit"].isdigit():
            raise bad_request("'limit' must be a whole number from 1 to 100.", param="limit")
        query["limit"] = int(query["limit"])
    page = validated(ResponseItemsQuery, query)
    response_id = request.path_params["response_id"]
    stored = await services.control_plane.stored_response(who.project_id, response_id)
    if stored is None:
        raise not_found(response_id)
    items: list[Item] = json.loads(stored[1])
    if page.order == "desc":
        items.reverse()
    if page.after is not None:
        ids = [item["id"] for item in items]
        if page.after not in ids:
            raise bad_request(f"'after' names no input item of response '{response_id}'.",
                              param="after")
        items = items[ids.index(page.after) + 1:]
    shown = items[:page.limit]
    return JSONResponse({"object": "list", "data": shown,
                         "first_id": shown[0]["id"] if shown else None,
                         "last_id": shown[-1]["id"] if shown else None,
                         "has_more": len(items) > len(shown)})


def _no_query(request: Request) -> None:
    """Nothing is silently ignored: OpenAI's query options of these routes (``include``,
    ``stream``) change what they return, and are not supported."""
    for name in request.query_params:
        raise bad_request(f"Unrecognized query parameter: {name}", param=name)


ROUTES = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]
