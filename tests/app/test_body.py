"""app/body.py: reading a request body (JSON object, size-limited whatever the headers say,
valid text) and validating it (the 400 names the field). The HTTP envelope of these errors is
tested through the app in test_api.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.requests import Request

from app.body import read_json, validated
from app.errors import APIError


def request(*parts: bytes, headers: dict[str, str] | None = None) -> tuple[Request, list[int]]:
    """A request whose body arrives in ``parts``; the list counts the parts read."""
    read: list[int] = []
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                for i, p in enumerate(parts)]

    async def receive() -> dict[str, Any]:
        read.append(1)
        return messages[len(read) - 1]

    raw = [(k.lower().encode(), v.encode())
           for k, v in (headers or {"content-type": "application/json"}).items()]
    return Request({"type": "http", "method": "POST", "headers": raw}, receive), read


async def refusal(req: Request, max_bytes: int = 100) -> APIError:
    with pytest.raises(APIError) as raised:
        await read_json(req, max_bytes, timeout_s=5)
    return raised.value


async def test_a_json_object_in_parts_is_read() -> None:
    req, _ = request(b'{"a": ', b'"\\u00e9"}',
                     headers={"content-type": "Application/JSON; charset=utf-8"})
    assert await read_json(req, 100, timeout_s=5) == {"a": "é"}


async def test_a_declared_size_over_the_limit_is_refused_unread() -> None:
    req, read = request(b"{}", headers={"content-type": "application/json",
                                        "content-length": "101"})
    assert (await refusal(req)).status == 413
    assert read == []


async def test_the_limit_holds_while_reading_without_a_declared_size() -> None:
    req, read = request(b'{"a": "' + b"x" * 60, b"x" * 60 + b'"}', b"never read")
    assert (await refusal(req)).status == 413
    assert len(read) == 2


@pytest.mark.parametrize(("body", "says"), [
    (b"  ", "empty"), (b"{no", "not valid JSON"), (b"[1]", "JSON object"),
    (b'{"a": "\\ud800"}', "surrogate"), (b"\xff", "not valid JSON"),
])
async def test_what_is_not_a_json_object_of_text_is_a_400(body: bytes, says: str) -> None:
    error = await refusal(request(body)[0])
    assert error.status == 400 and says in error.message


async def test_another_content_type_is_a_415() -> None:
    req, _ = request(b"{}", headers={"content-type": "text/plain"})
    assert (await refusal(req)).status == 415


class Schema(BaseModel):
    model: str
    n: int = 1


def test_validation_names_the_field_at_fault() -> None:
    assert validated(Schema, {"model": "m"}) == Schema(model="m")
    with pytest.raises(APIError) as raised:
        validated(Schema, {"model": "m", "n": "many"})
    assert (raised.value.status, raised.value.param) == (400, "n")


async def test_a_body_that_does_not_arrive_in_time_is_a_408() -> None:
    parts = iter([{"type": "http.request", "body": b'{"a":', "more_body": True}])

    async def receive() -> dict[str, Any]:
        part = next(parts, None)
        if part is None:
            await asyncio.Event().wait()  # the rest never comes: a client sending nothing more
        assert part is not None
        return part

    req = Request({"type": "http", "method": "POST",
                   "headers": [(b"content-type", b"application/json")]}, receive)
    with pytest.raises(APIError) as raised:
        await read_json(req, 100, timeout_s=0.05)
    assert (raised.value.status, raised.value.code) == (408, "body_timeout")
