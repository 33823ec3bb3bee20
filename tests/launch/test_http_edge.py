"""launch/http_edge.py: uvicorn as Serve's proxy runs it, with the edge's bounds, in this
process; raw sockets play the clients the ingress never sees."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from bench.run import free_port
from launch import http_edge


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body (a slow one slowly), answers with the request id it was given."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = dict(scope["headers"]).get(b"x-request-id", b"").decode()
    payload = json.dumps({"request_id": seen, "bytes": len(body)}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(http_edge, "HEADERS_TIMEOUT_S", 1.0)
    middleware = http_edge.proxy_middlewares()[0]
    app = middleware.cls(echo_app, max_unread_bodies=2)  # type: ignore[call-arg]
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=request.param,
                            log_level="critical", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.01)
    yield port
    running.should_exit = True
    thread.join(5)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while True:
        part = sock.recv(65536)
        if not part:
            break
        data += part
        head, sep, body = data.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        if sep and len(body) >= int(headers.get("content-length", 1 << 30)):
            break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def envelope(body: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_malformed_http_is_a_400_in_the_envelope(server: int) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\x00\x01\r\n\r\n")
        status, headers, body = answer(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert envelope(body)["type"] == "invalid_request_error"


def test_headers_that_never_end_are_cut_off(server: int) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        start = time.monotonic()
        status, _, body = answer(sock)
        waited = time.monotonic() - start
    assert status == 408 and envelope(body)["code"] == "headers_timeout"
    assert waited < 5


def test_a_silent_connection_is_cut_off_too(server: int) -> None:
    with connect(server) as sock:
        status, _, _ = answer(sock)  # not a byte sent
    assert status == 408


def test_a_kept_alive_connection_gets_a_new_clock_per_request(server: int) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer(sock)[0] == 200
        time.sleep(1.5)  # longer than the header limit, between requests: uvicorn's keep-alive
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer(sock)[0] == 200


def test_a_request_id_is_kept_only_when_safe(server: int) -> None:
    for sent, kept in (("trace-1", "trace-1"), ("a" * 200, ""), ('x"<b>', "")):
        with connect(server) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nx-request-id: {sent}\r\n\r\n".encode())
            _, _, body = answer(sock)
        assert json.loads(body)["request_id"] == kept


def test_one_client_holds_only_so_many_slow_bodies(server: int) -> None:
    def slow_post(key: str) -> socket.socket:
        sock = connect(server)
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                     "Content-Length: 100\r\n\r\nab".encode())
        return sock

    holding = [slow_post("sk-one") for _ in range(2)]
    time.sleep(0.3)  # the app is reading both bodies
    with slow_post("sk-one") as third:
        status, headers, body = answer(third)
    assert status == 429 and headers["retry-after"] == "1"
    assert envelope(body)["code"] == "too_many_open_requests"
    with slow_post("sk-other") as other:  # another client is not held up
        other.sendall(b"c" * 98)
        assert answer(other)[0] == 200
    for sock in holding:  # once a body is all there, the slot is free again
        sock.sendall(b"c" * 98)
        assert answer(sock)[0] == 200
        sock.close()
    with slow_post("sk-one") as again:
        again.sendall(b"c" * 98)
        assert answer(again)[0] == 200


def test_the_callback_is_idempotent() -> None:
    http_edge.bound_http_parsing()
    http_edge.bound_http_parsing()
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert HttpToolsProtocol.bounded_by_the_edge  # type: ignore[attr-defined]
    assert isinstance(http_edge.proxy_middlewares()[0], Middleware)
