"""One error type, mapped once to OpenAI's envelope (docs/api.md, "Errors").

Endpoints raise :class:`APIError` (defined with the other messages that cross Serve handles,
since a model replica returns it too); the ingress turns it into
``{"error": {"message", "type", "param", "code"}}`` with the status from the contract's table.
Anything else is a bug: a generic 500 that carries the request id, never internals.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse

from messages import APIError

__all__ = [
    "APIError",
    "ParamError",
    "bad_request",
    "error_response",
    "from_validation_error",
    "model_not_found",
    "no_replica_ready",
    "overloaded",
    "replica_failed",
    "server_error",
    "timed_out",
]


class ParamError(ValueError):
    """Raised by a cross-field validator to name the field at fault (pydantic reports such
    errors at the model's root, where no field is named)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def model_not_found(model: str) -> APIError:
    return APIError(
        404, f"The model '{model}' does not exist.", param="model", code="model_not_found"
    )


def server_error(request_id: str) -> APIError:
    return APIError(
        500,
        f"The server had an error while processing your request (request id {request_id}).",
    )


def _param_path(loc: tuple[int | str, ...]) -> str:
    """``("messages", 0, "content")`` -> ``messages[0].content`` (OpenAI's spelling)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _client_loc(loc: tuple[int | str, ...], data: Any, missing: bool) -> tuple[int | str, ...]:
    """Keep the parts of a pydantic location that exist in the client's own JSON.

    pydantic adds union-member and tag names ("str", "list[str]", "user") to locations; a
    client only knows its field names and indices. A missing field is kept as the last part.
    """
    kept: list[int | str] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            kept.append(part)
            node = node[part]
        elif missing and i == len(loc) - 1:
            kept.append(part)
    return tuple(kept)


def from_validation_error(exc: ValidationError, data: Any) -> APIError:
    """The first problem pydantic found in ``data``, as a 400 that names the field."""
    errors = exc.errors(include_url=False)
    located = [(e, _client_loc(tuple(e["loc"]), data, e["type"] == "missing")) for e in errors]
    # An unknown field is named first (docs/api.md, "Errors"); otherwise the most precise location wins,
    # e.g. "input[0]" over "input" when no member of a union matched.
    unknown = [pair for pair in located if pair[0]["type"] == "extra_forbidden"]
    first, loc = unknown[0] if unknown else max(located, key=lambda pair: len(pair[1]))
    param = _param_path(loc) or None
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ParamError):
        param = cause.param
    if first["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif first["type"] == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        msg = str(first["msg"]).removeprefix("Value error, ")
        message = f"Invalid value for '{param}': {msg}." if param else f"{msg}."
    return bad_request(message, param=param)


# Seconds a client should wait before retrying when replicas are full or a replica failed.
RETRY_AFTER_SECONDS = 1
# ... and when no replica was ready (a start from zero takes seconds to minutes: model loading).
COLD_START_RETRY_AFTER_SECONDS = 5


def _unavailable(message: str, code: str, retry_after: int) -> APIError:
    return APIError(503, message, code=code, headers={"Retry-After": str(retry_after)})


def overloaded(model: str) -> APIError:
    return _unavailable(
        f"The model '{model}' is serving as many requests as it can queue; retry shortly.",
        "overloaded", RETRY_AFTER_SECONDS)


def replica_failed(model: str) -> APIError:
    return _unavailable(
        f"The replica of the model '{model}' working on this request stopped; it is being "
        "replaced, retry shortly.", "replica_failed", RETRY_AFTER_SECONDS)


def no_replica_ready(model: str, waited_s: float) -> APIError:
    return _unavailable(
        f"No replica of the model '{model}' took the request within {waited_s:g} s (it may be "
        "starting up from zero or busy); retry shortly.",
        "no_replica_ready", COLD_START_RETRY_AFTER_SECONDS)


def timed_out() -> APIError:
    return _unavailable(
        "The request did not finish within the service's deadline; retry, or ask for fewer "
        "tokens.", "request_timeout", RETRY_AFTER_SECONDS)


def error_response(exc: APIError) -> JSONResponse:
    """The envelope for ``exc``, with its status and headers."""
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
