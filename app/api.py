"""The public HTTP API: routes, body parsing, the error envelope and SSE framing.

Middleware order, outermost first, and why:
1. :class:`RequestContext`: mints or echoes ``x-request-id`` and turns any unexpected
   exception into the generic 500 envelope, so every response, a 500 included, carries the id.
2. starlette's exception middleware: maps :class:`APIError` and routing errors (404, 405) to
   the envelope, once, at the edge (DESIGN.md, 3).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.auth import Authenticator, Caller, Need
from app.backend import ModelBackend, StreamItem
from app.control_plane import ControlPlaneAPI
from app.errors import APIError, bad_request, from_validation_error, server_error
from app.protocol import ChatCompletionRequest, EmbeddingRequest, ModelList
from app.quotas import DEFAULT_COMPLETION_RESERVE, Admission, QuotaGate, estimate_tokens
from app.usage import UsageMeter

logger = logging.getLogger("inference.api")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT_S = 600.0
REQUEST_ID_HEADER = "x-request-id"


class ProjectConvertor(StringConvertor):
    """A project segment: anything but ``v1``, so ``/v1/...`` is never read as a project
    (which would turn a 405 on a known route into a 404)."""

    regex = r"(?!v1(?:/|$))[^/]+"


register_url_convertor("project", ProjectConvertor())


def error_response(exc: APIError, request_id: str | None = None) -> JSONResponse:
    headers = dict(exc.headers)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


class RequestContext:
    """Pure ASGI middleware: request id on every response, generic 500 for bugs.

    Behind Serve's proxy the id is already in the request headers and the proxy puts it on
    the response, so ``add_header`` is off there; standalone it is on.
    """

    def __init__(self, app: ASGIApp, add_header: bool = True) -> None:
        self.app = app
        self.add_header = add_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or f"req_{uuid.uuid4().hex}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["arrived"] = time.monotonic()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.add_header:
                    headers = list(message.get("headers", []))
                    headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("request %s failed", request_id)
            if status != 500:  # the response had started: nothing more can be sent
                raise
            await error_response(server_error(request_id), request_id)(scope, receive, send)
        finally:
            _observe(scope, state, status)


def _observe(scope: Scope, state: dict[str, Any], status: int) -> None:
    """Requests by status and their latency, tagged by what the handler learned."""
    route = scope.get("path", "").rsplit("/v1/", 1)[-1].split("/", 1)[0] or "other"
    if route not in ("chat", "embeddings", "models", "usage"):
        route = "health" if scope.get("path") == "/health" else "other"
    model = state.get("model", "")
    metrics.requests.inc(tags={"route": route, "model": model,
                               "project": state.get("project", ""), "status": str(status)})
    metrics.latency.observe(time.monotonic() - state["arrived"],
                            tags={"route": route, "model": model, "status": str(status)})


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1").strip()
            # Echo only ids that are safe to put back in a header and a log line.
            if 0 < len(text) <= 128 and all(c.isalnum() or c in "-_.:" for c in text):
                return text
    return None


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, read with a size limit whatever the headers say."""
    content_type = request.headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise APIError(415, f"Content-Type must be application/json, got '{content_type}'.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("The request body is empty; expected a JSON object.")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    try:  # JSON may spell lone UTF-16 surrogates ("\\ud800"); no tokenizer takes them
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("The request body contains a lone UTF-16 surrogate, which is "
                          "not valid text.") from None
    return data


def _too_large(max_bytes: int) -> APIError:
    return APIError(413, f"The request body is larger than the limit of {max_bytes} bytes.")


def _validated(
    model: type[ChatCompletionRequest | EmbeddingRequest], data: dict[str, Any]
) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, data) from None


def _reply(reply: dict[str, Any]) -> JSONResponse:
    return JSONResponse(reply["body"], status_code=reply["status"])


async def _require_task(models: ModelBackend, model: str, task: str, route: str) -> None:
    actual = await models.task_of(model)
    if actual != task:
        raise bad_request(
            f"'{model}' is an {actual} model; it cannot be used with {route}.",
            param="model",
            code="model_not_supported",
        )


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
    return req.model_dump(exclude_none=True, by_alias=True, exclude={"stream_options"})


def build_api(
    models: ModelBackend,
    control_plane: ControlPlaneAPI,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    add_request_id_header: bool = True,
    usage_flush_seconds: float = 1.0,
) -> Starlette:
    auth = Authenticator(control_plane)
    meter = UsageMeter(control_plane, interval=usage_flush_seconds)
    quotas = QuotaGate(control_plane)

    async def caller(request: Request, need: Need) -> Caller:
        who = await auth.caller(request.headers, request.path_params.get("project"), need)
        request.state.project = who.project_id
        return who

    def on_usage(who: Caller, model: str, user: str | None, admission: Admission | None
                 ) -> Callable[[dict[str, Any] | None], None]:
        """Called once when a request ends: meters its usage (under the request's ``user``,
        if it named one) and settles its quota reservation (a request that produced nothing
        settles at zero tokens)."""
        def done(usage: dict[str, Any] | None) -> None:
            if usage is not None:
                meter.record(who.project_id, who.key_id, model, usage, user)
                tags = {"model": model, "project": who.project_id}
                for counter, field in ((metrics.prompt_tokens, "prompt_tokens"),
                                       (metrics.completion_tokens, "completion_tokens")):
                    if count := int(usage.get(field) or 0):  # Ray's counters refuse 0
                        counter.inc(count, tags=tags)
            quotas.settle(admission, int((usage or {}).get("total_tokens") or 0))
        return done

    def finish(reply: dict[str, Any], done: Callable[[dict[str, Any] | None], None],
               admission: Admission | None) -> Response:
        done(reply["body"].get("usage") if reply["status"] == 200 else None)
        response = _reply(reply)
        response.headers.update(admission.headers if admission else {})
        return response

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_models(request: Request) -> Response:
        await caller(request, "model")
        return JSONResponse(ModelList(data=await models.cards()).model_dump(exclude_none=True))

    async def get_model(request: Request) -> Response:
        await caller(request, "model")
        model_id = request.path_params["model_id"]
        await models.task_of(model_id)  # 404 for an unknown id
        card = next(c for c in await models.cards() if c.id == model_id)
        return JSONResponse(card.model_dump(exclude_none=True))

    async def model_request(
        request: Request, schema: type[ChatCompletionRequest | EmbeddingRequest], task: str
    ) -> tuple[Caller, Any]:
        """Who calls, and their validated request for a model of ``task``: in this order,
        so a caller without a key learns nothing about the body or the models."""
        who = await caller(request, "model")
        req = _validated(schema, await read_json(request, max_body_bytes))
        await _require_task(models, req.model, task, request.url.path)
        request.state.model = req.model
        return who, req

    async def chat_completions(request: Request) -> Response:
        who, req = await model_request(request, ChatCompletionRequest, "chat")
        body = engine_body(req)
        admission = await quotas.admit(who.project_id, lambda: chat_reservation(req))
        done = on_usage(who, req.model, req.user, admission)
        streaming = False
        deadline = time.monotonic() + request_timeout_s
        try:
            if not req.stream:
                async with _deadline(deadline):
                    reply = await models.chat(req.model, body)
                return finish(reply, done, admission)
            stream = models.chat_stream(req.model, body, req.include_usage)
            async with _deadline(deadline):
                first = await anext(stream)
            if isinstance(first, dict):
                return finish(first, done, admission)
            streaming = True  # from here on, the stream settles when it ends
            return StreamingResponse(
                _sse(first, stream, request.state.request_id, done, deadline,
                     _token_clock(req.model, request.state.arrived)),
                media_type="text/event-stream",
                headers=admission.headers if admission else None,
            )
        finally:
            if not streaming:
                quotas.settle(admission, 0)  # no-op once settled

    async def embeddings(request: Request) -> Response:
        who, req = await model_request(request, EmbeddingRequest, "embedding")
        admission = await quotas.admit(
            who.project_id, lambda: estimate_tokens(sum(len(t) for t in req.texts)))
        try:
            async with _deadline(time.monotonic() + request_timeout_s):
                reply = await models.embed(req.model, req.model_dump(exclude_none=True))
            return finish(reply, on_usage(who, req.model, req.user, admission), admission)
        finally:
            quotas.settle(admission, 0)

    async def usage(request: Request) -> Response:
        who = await caller(request, "usage")
        since = request.query_params.get("since")
        if since is not None and not _is_day(since):
            raise bad_request("'since' must be a day, YYYY-MM-DD.", param="since")
        await meter.flush()  # this replica's own recent requests, before reading the ledger
        rows = await control_plane.usage(who.project_id, since)
        return JSONResponse({"object": "list", "data": rows})

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            err = APIError(404, f"Unknown route: {request.method} {request.url.path}.")
        elif exc.status_code == 405:
            err = APIError(405, f"Method {request.method} is not allowed on {request.url.path}.")
        else:
            err = APIError(exc.status_code, str(exc.detail))
        return error_response(err)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await meter.close()  # what is still buffered reaches the ledger before shutdown

    v1: list[BaseRoute] = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/usage", usage, methods=["GET"]),
    ]
    # Every /v1 route also answers under /<project-id>/v1 (CONTRACT.md, "Routes").
    routes = [Route("/health", health, methods=["GET"]), *v1, Mount("/{project:project}", routes=v1)]
    app = Starlette(
        routes=routes,
        exception_handlers={APIError: on_api_error, HTTPException: on_http_error},
        lifespan=lifespan,
    )
    app.add_middleware(RequestContext, add_header=add_request_id_header)
    return app


def _token_clock(model: str, arrived: float) -> Callable[[], None]:
    """Observes time to first token on the first call, the gap between chunks after."""
    last: float | None = None
    tags = {"model": model}

    def tick() -> None:
        nonlocal last
        now = time.monotonic()
        if last is None:
            metrics.ttft.observe(now - arrived, tags=tags)
        else:
            metrics.itl.observe(now - last, tags=tags)
        last = now

    return tick


def timed_out() -> APIError:
    return APIError(
        503,
        "The request did not finish within the service's deadline; retry, or ask for fewer "
        "tokens.",
        code="request_timeout",
        headers={"Retry-After": "1"},
    )


@asynccontextmanager
async def _deadline(when: float) -> AsyncIterator[None]:
    """Cancel the work inside (which aborts an engine request) once ``when`` passes."""
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time()
                                      + max(0.0, when - time.monotonic())):
            yield
    except TimeoutError:
        raise timed_out() from None


def _is_day(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


async def _sse(
    first: str,
    rest: AsyncIterator[StreamItem],
    request_id: str,
    done: Callable[[dict[str, Any] | None], None],
    deadline: float,
    tick: Callable[[], None],
) -> AsyncIterator[str]:
    """SSE frames as the engine made them, metered once the stream ends, however it ends.

    The chat deployment sends the final usage as a dict when the client did not ask for
    OpenAI's trailing usage chunk; otherwise the last frame with ``usage`` holds the counts
    (for a stream the client cut off: the tokens generated until the cut). A failure after the
    first byte becomes an error event followed by ``[DONE]`` (CONTRACT.md), and so does the
    deadline passing.
    """
    last_usage_frame: str | None = first if '"usage"' in first else None
    final_usage: dict[str, Any] | None = None
    try:
        tick()
        yield first
        while True:
            try:
                item = await asyncio.wait_for(anext(rest), deadline - time.monotonic())
            except StopAsyncIteration:
                break
            except TimeoutError:
                yield f"data: {json.dumps(timed_out().body())}\n\n"
                yield "data: [DONE]\n\n"
                break
            if isinstance(item, dict):
                final_usage = item.get("usage")
                continue
            if '"usage"' in item:
                last_usage_frame = item
            tick()
            yield item
    except Exception:
        logger.exception("stream %s failed after it started", request_id)
        err = server_error(request_id)
        yield f"data: {json.dumps(err.body())}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if final_usage is None and last_usage_frame is not None:
            final_usage = json.loads(last_usage_frame.removeprefix("data: "))["usage"]
        done(final_usage)
