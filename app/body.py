"""Reading a request body: JSON, size-limited whatever the headers say, valid text."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from app.errors import APIError, bad_request, from_validation_error

# Deeper bodies are refused: no request of the API nests near this, and every layer behind the
# reader (validation, the engine's schema compiler) would otherwise have to survive them.
MAX_JSON_DEPTH = 64


async def read_json(request: Request, max_bytes: int, timeout_s: float) -> dict[str, Any]:
    """The request body as a JSON object, read with a size limit whatever the headers say
    and a time limit however slowly it comes (a client that sends a byte at a time holds an
    ingress slot for nothing)."""
    content_type = request.headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise APIError(415, f"Content-Type must be application/json, got '{content_type}'.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    try:
        async with asyncio.timeout(timeout_s):
            raw = await _read(request, max_bytes)
    except TimeoutError:
        raise APIError(408, f"The request body did not arrive within {timeout_s:g} s.",
                       code="body_timeout") from None
    if not raw.strip():
        raise bad_request("The request body is empty; expected a JSON object.")
    data = _parsed(raw)
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    if _depth(data) > MAX_JSON_DEPTH:
        raise _too_deep()
    try:  # JSON may spell lone UTF-16 surrogates ("\\ud800"); no tokenizer takes them
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("The request body contains a lone UTF-16 surrogate, which is "
                          "not valid text.") from None
    return data


def _parsed(raw: bytes) -> Any:
    """Whatever the parser cannot take is the client's 400, never a 500: besides malformed
    JSON, a nesting deeper than the parser's recursion allows and an integer longer than
    Python converts (both raised by the parser itself, not as JSON errors)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        reason = str(exc).split(";")[0].rstrip(".")
        raise bad_request(f"The request body is not valid JSON: {reason}.") from None


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest, level = 0, [(value, 1)]
    while level:
        node, depth = level.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(
            node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        level.extend((child, depth + 1) for child in children)
    return deepest


Schema = TypeVar("Schema", bound=BaseModel)


def validated(schema: type[Schema], data: dict[str, Any]) -> Schema:
    """``data`` as ``schema``, or the 400 that names the first field at fault."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, data) from None


async def _read(request: Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_deep() -> APIError:
    return bad_request(f"The request body nests arrays and objects deeper than "
                       f"{MAX_JSON_DEPTH} levels.")


def _too_large(max_bytes: int) -> APIError:
    return APIError(413, f"The request body is larger than the limit of {max_bytes} bytes.")
