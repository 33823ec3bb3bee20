"""The ingress's own HTTP front (app/http_front.py) on a real socket, in this process, in front
of small ASGI apps written here: hang-ups cancel handlers, request ids, malformed HTTP, and
replicas sharing one port."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.http_front import HttpFront
from app.middleware.request_id import RequestId
from bench.run import free_port


class RecordingApp:
    """A test double of the API: reads the body, then takes ``seconds`` to answer; records
    whether the handler ran to its end or was cancelled, and the request id it saw."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ended: asyncio.Queue[str] = asyncio.Queue()
        self.request_ids: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.request_ids.append(scope.get("state", {}).get("request_id"))
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.ended.put_nowait("cancelled")
            raise
        body = json.dumps({"ok": True}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        self.ended.put_nowait("answered")


@pytest.fixture
async def served() -> AsyncIterator[tuple[RecordingApp, str]]:
    app = RecordingApp(seconds=0.05)
    front = HttpFront(app, "127.0.0.1", free_port())
    await front.start()
    try:
        yield app, f"http://127.0.0.1:{front.port}"
    finally:
        await front.stop()


async def test_a_reply_that_completes_is_not_cancelled(
        served: tuple[RecordingApp, str]) -> None:
    app, url = served
    async with httpx.AsyncClient() as client:
        for _ in range(3):  # kept-alive connection: each reply ends its own watch only
            resp = await client.post(url, content=b'{"x": 1}')
            assert resp.json() == {"ok": True}
    assert [app.ended.get_nowait() for _ in range(3)] == ["answered"] * 3


async def test_a_client_hang_up_cancels_a_whole_reply_within_a_second() -> None:
    app = RecordingApp(seconds=30)
    front = HttpFront(app, "127.0.0.1", free_port())
    await front.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", front.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                     b"content-length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(0.3)  # the handler has the body and is working
        writer.close()
        ended = await asyncio.wait_for(app.ended.get(), 1.0)
        assert ended == "cancelled"
    finally:
        await front.stop()


async def test_request_ids_minted_echoed_or_replaced() -> None:
    # As the ingress serves the API behind its front: the API's RequestId puts the id on.
    app = RecordingApp(seconds=0)
    front = HttpFront(RequestId(app, add_header=True), "127.0.0.1", free_port())
    await front.start()
    url = f"http://127.0.0.1:{front.port}"
    async with httpx.AsyncClient() as client:
        minted = await client.post(url, content=b"{}")
        kept = await client.post(url, content=b"{}", headers={"x-request-id": "trace-42"})
        unsafe = await client.post(url, content=b"{}", headers={"x-request-id": "a b\tc"})
    assert minted.headers["x-request-id"] == app.request_ids[0]
    assert str(app.request_ids[0]).startswith("req_") and len(str(app.request_ids[0])) > 20
    assert kept.headers["x-request-id"] == app.request_ids[1] == "trace-42"
    await front.stop()
    assert unsafe.headers["x-request-id"] == app.request_ids[2] != "a b\tc"


async def test_malformed_http_gets_the_error_envelope(served: tuple[RecordingApp, str]) -> None:
    _, url = served
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"]["code"] == "invalid_http"


async def test_replicas_share_the_port_and_one_stopping_leaves_the_other_serving() -> None:
    port = free_port()
    first, second = RecordingApp(0), RecordingApp(0)
    fronts = [HttpFront(first, "127.0.0.1", port), HttpFront(second, "127.0.0.1", port)]
    for front in fronts:
        await front.start()
    try:
        await fronts[0].stop()
        async with httpx.AsyncClient() as client:
            for _ in range(5):
                assert (await client.post(f"http://127.0.0.1:{port}", content=b"{}")).is_success
        assert len(second.request_ids) == 5
    finally:
        await fronts[1].stop()


async def test_a_port_another_program_holds_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        front = HttpFront(RecordingApp(0), "127.0.0.1", holder.getsockname()[1])
        with pytest.raises(RuntimeError, match="cannot listen on 127.0.0.1"):
            await front.start()
