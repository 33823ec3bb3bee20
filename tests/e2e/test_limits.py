"""Quotas, overload, disconnects and body limits on the live app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from control.quota_book import seconds_to_reset
from deployments.app import deployment_name
from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, inference_cli, make_client

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]


def running_requests() -> int:
    from ray import serve

    handle = serve.get_deployment_handle(deployment_name(CHAT_MODEL), app_name="inference")
    return int(handle.running_requests.remote().result())


def wait_until_idle(seconds: float) -> float:
    start = time.monotonic()
    while running_requests() and time.monotonic() - start < seconds:
        time.sleep(0.1)
    return time.monotonic() - start


def limited_client(base_url: str, name: str, **limits: int) -> openai.OpenAI:
    """A client with model access to a new project ``name`` whose quotas are ``limits``
    (``rpm=3``, ``tpm=200``), both made with the admin CLI."""
    project = inference_cli("projects", "create", name)["id"]
    inference_cli("projects", "update", project,
                  *(arg for kind, limit in limits.items() for arg in (f"--{kind}", str(limit))))
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                        "--project", project)["secret_key"]
    with_the_minute_ahead()
    return make_client(base_url, key, project)


def with_the_minute_ahead(margin_s: float = 15.0) -> None:
    """Quotas count calendar minutes (docs/api.md, "Quotas"): a new minute gives a project
    its whole quota again. A test that spends a quota in a few requests starts with at least
    ``margin_s`` of the minute left, so they all count against one minute; otherwise the
    minute can turn between them and the request meant to be refused is rightly admitted."""
    left = seconds_to_reset(time.time())
    if left < margin_s:
        time.sleep(left + 0.1)


def test_rpm_quota_raises_rate_limit_error_with_headers(base_url: str, admin_key: str) -> None:
    client = limited_client(base_url, "rpm-limited", rpm=3)
    first = client.embeddings.with_raw_response.create(model=EMBED_MODEL, input="a")
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert int(first.headers["x-ratelimit-remaining-requests"]) <= 2
    for _ in range(2):
        client.embeddings.create(model=EMBED_MODEL, input="a")
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model=EMBED_MODEL, input="a")
    assert info.value.code == "rate_limit_requests"
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_tpm_quota_counts_max_tokens(base_url: str, admin_key: str) -> None:
    client = limited_client(base_url, "tpm-limited", tpm=200)
    reply = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=STORY, max_tokens=20)
    assert reply.headers["x-ratelimit-limit-tokens"] == "200"
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=STORY, max_tokens=300)
    assert info.value.code == "rate_limit_tokens"


def test_abandoned_streams_abort_their_engine_requests(client: openai.OpenAI) -> None:
    streams = [client.chat.completions.create(model=CHAT_MODEL, messages=STORY,
                                              max_tokens=1500, stream=True, temperature=1.0)
               for _ in range(4)]
    for stream in streams:
        for i, _ in enumerate(stream):
            if i == 2:
                break
    assert running_requests() > 0, "the generations were running"
    for stream in streams:
        stream.close()
    assert wait_until_idle(10) < 5, "aborted within a few seconds"


def test_abandoned_whole_replies_abort_too(base_url: str, admin_key: str) -> None:
    body = {"model": CHAT_MODEL, "messages": STORY, "max_tokens": 1500}
    headers = {"Authorization": f"Bearer {admin_key}"}
    for _ in range(3):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers,
                       timeout=httpx.Timeout(10, read=1.0))
    assert wait_until_idle(10) < 5


def test_body_over_the_limit_is_413(base_url: str, admin_key: str) -> None:
    big = b'{"model": "x", "input": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    headers = {"Authorization": f"Bearer {admin_key}", "content-type": "application/json"}
    resp = httpx.post(f"{base_url}/v1/embeddings", content=big, headers=headers, timeout=60)
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "invalid_request_error"

    def chunks() -> Iterator[bytes]:  # no Content-Length
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    resp = httpx.post(f"{base_url}/v1/embeddings", content=chunks(), headers=headers,
                      timeout=60)
    assert resp.status_code == 413


@pytest.fixture(scope="module")
def tiny_queue_url(serve_proxy_url: str) -> Iterator[str]:
    """A second app whose embedding replica takes one request and queues one more."""
    from ray import serve

    from deployments.app import build_app

    args: dict[str, Any] = {
        "ingress": {"deployment": {"num_cpus": 0.01}},
        "models": [{
            "id": EMBED_MODEL, "task": "embedding", "source": "builtin:all-minilm-l6-v2",
            "deployment": {"num_cpus": 0.01, "max_ongoing_requests": 1,
                           "max_queued_requests": 1},
        }],
    }
    serve.run(build_app(args), name="tiny-queue", route_prefix="/tiny")
    try:
        yield f"{serve_proxy_url}/tiny"
    finally:
        serve.delete("tiny-queue")


async def test_full_queue_is_a_fast_503_and_held_requests_succeed(
        tiny_queue_url: str, admin_key: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{tiny_queue_url}/v1", api_key=admin_key,
                                max_retries=0, timeout=120)
    texts = [f"sentence {i} " * 30 for i in range(256)]

    async def one() -> Any:
        try:
            return await client.embeddings.create(model=EMBED_MODEL, input=texts)
        except openai.APIStatusError as exc:
            return exc

    results = await asyncio.gather(*(one() for _ in range(8)))
    refused = [r for r in results if isinstance(r, openai.APIStatusError)]
    served = [r for r in results if not isinstance(r, Exception)]
    assert refused and served, results
    for exc in refused:
        assert exc.status_code == 503
        assert exc.body["type"] == "overloaded_error"  # type: ignore[index]
        assert exc.response.headers["retry-after"] == "1"
    assert all(len(r.data) == 256 for r in served)
