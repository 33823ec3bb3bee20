"""The HTTP edge in Serve's proxy (launch/http_edge.py), met as a client meets it: raw
sockets to the running app's port."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from launch.serve_env import serve_env
from tests.launch.test_http_edge import answer

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

HEADERS_TIMEOUT_S = float(serve_env()["INFERENCE_HEADERS_TIMEOUT_S"])
MAX_UNREAD_BODIES = int(serve_env()["INFERENCE_MAX_UNREAD_BODIES_PER_CLIENT"])


def connect(base_url: str) -> socket.socket:
    url = urlparse(base_url)
    return socket.create_connection((url.hostname, url.port), timeout=HEADERS_TIMEOUT_S + 20)


def error_of(body: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_malformed_http_is_a_400_in_the_envelope(base_url: str) -> None:
    with connect(base_url) as sock:
        sock.sendall(b"\x16\x03\x01 not http\r\n\r\n")  # a TLS hello, say
        status, headers, body = answer(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert error_of(body)["type"] == "invalid_request_error"


def test_headers_too_slow_are_cut_off(base_url: str) -> None:
    with connect(base_url) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        status, _, body = answer(sock)
    assert status == 408 and error_of(body)["code"] == "headers_timeout"
    assert time.monotonic() - start < HEADERS_TIMEOUT_S + 5


def test_only_a_short_printable_request_id_is_echoed(base_url: str) -> None:
    for sent in ("x" * 2000, 'quote"<script>'):
        reply = httpx.get(f"{base_url}/health", headers={"x-request-id": sent})
        assert reply.status_code == 200
        assert reply.headers["x-request-id"] != sent
        assert len(reply.headers["x-request-id"]) <= 128
    kept = httpx.get(f"{base_url}/health", headers={"x-request-id": "trace-42"})
    assert kept.headers["x-request-id"] == "trace-42"


def test_one_key_holds_only_so_many_slow_bodies(base_url: str, admin_key: str) -> None:
    def slow_post() -> socket.socket:
        sock = connect(base_url)
        sock.sendall(f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     f"{admin_key}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1000\r\n\r\n{".encode())
        return sock

    holding = [slow_post() for _ in range(MAX_UNREAD_BODIES)]
    try:
        deadline = time.monotonic() + 30
        status = 0
        while status != 429 and time.monotonic() < deadline:  # until the ingress reads them all
            with slow_post() as one_more:
                one_more.sendall(b'"model": "x"}' + b" " * 986)
                status, headers, body = answer(one_more)
            time.sleep(0.2)
        assert status == 429, "one key held every slot it opened"
        assert error_of(body)["code"] == "too_many_open_requests"
        assert headers["retry-after"] == "1"
    finally:
        for sock in holding:
            sock.close()
    # Once its slow bodies are gone the key is served again.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        again = httpx.get(f"{base_url}/v1/models",
                          headers={"Authorization": f"Bearer {admin_key}"})
        if again.status_code == 200:
            break
        time.sleep(0.5)
    assert again.status_code == 200
