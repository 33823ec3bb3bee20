"""The request contract over generated requests, against the running app on the real
models: chat, legacy completion and embedding requests drawn from OpenAI's API description (tests/contract),
valid and broken, each answered with a success the SDK's types parse or an error in the
envelope, never a 5xx. Seeded, as the in-process run."""

from __future__ import annotations

import collections
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.contract.generated import Generated, check_reply, declared_only, requests
from tests.support.e2e import CHAT_MODEL, EMBED_MODEL

pytestmark = pytest.mark.slow
SENT: collections.Counter[int] = collections.Counter()

chat_fields = declared_only("/chat/completions")
embedding_fields = declared_only("/embeddings")
completion_fields = declared_only("/completions")


def bounded_chat(body: dict[str, Any]) -> dict[str, Any]:
    """What the engine spends on one request, bounded by choices the description allows
    (smaller values of the same fields): a few hundred requests in minutes, not hours, on a
    CPU engine. The contract's checks of these fields run in the in-process tier."""
    body = chat_fields(body)
    for field in ("max_completion_tokens", "max_tokens"):
        if body.get(field) is None:  # null: no bound at all, the whole context
            body.pop(field, None)
        elif isinstance(body[field], int) and body[field] > 4:
            body[field] = 4
    if "max_completion_tokens" not in body and "max_tokens" not in body:
        body["max_completion_tokens"] = 4
    if isinstance(body.get("n"), int) and body["n"] > 2:
        body["n"] = 2
    return body


def bounded_embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """At most 16 inputs (the description allows 2,048), for the same reason."""
    body = embedding_fields(body)
    if isinstance(body.get("input"), list) and len(body["input"]) > 16:
        body["input"] = body["input"][:16]
    return body


def bounded_completion(body: dict[str, Any]) -> dict[str, Any]:
    """As :func:`bounded_chat`, and at most 4 prompts; without ``suffix`` and ``best_of``,
    which are a 400 whatever else is sent (the in-process run sends them), so that the
    requests reach the engine."""
    body = {k: v for k, v in completion_fields(body).items() if k not in ("suffix", "best_of")}
    if body.get("max_tokens") is None or (isinstance(body["max_tokens"], int)
                                          and body["max_tokens"] > 4):
        body["max_tokens"] = 4
    if isinstance(body.get("n"), int) and body["n"] > 2:
        body["n"] = 2
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        body["prompt"] = prompt[:4]
    return body


RUNS = [
    ("/chat/completions", GenerationMode.POSITIVE, CHAT_MODEL, bounded_chat, 200),
    ("/chat/completions", GenerationMode.NEGATIVE, None, None, 50),
    ("/embeddings", GenerationMode.POSITIVE, EMBED_MODEL, bounded_embeddings, 150),
    ("/embeddings", GenerationMode.NEGATIVE, None, None, 50),
    ("/completions", GenerationMode.POSITIVE, CHAT_MODEL, bounded_completion, 150),
    ("/completions", GenerationMode.NEGATIVE, None, None, 50),
]


@pytest.mark.parametrize(("path", "mode", "model", "shape", "cases"), RUNS,
                         ids=[f"{p} {m.value}" for p, m, *_ in RUNS])
def test_generated_requests_against_the_running_app(http: httpx.Client, path: str,
                                                    mode: GenerationMode, model: str | None,
                                                    shape: Any, cases: int) -> None:
    # No shrinking: each step is a request to the real engine; the failing one is reported.
    @settings(max_examples=cases, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(requests("POST", path, mode, model, shape))
    def run(request: Generated) -> None:
        reply = http.post(request.path, content=request.content,
                          headers={"Content-Type": "application/json"})
        check_reply(request, reply.status_code, reply.headers.get("content-type", ""),
                    reply.content)
        SENT[reply.status_code // 100 * 100] += 1

    run()
    print(f"{path} {mode.value}: {dict(SENT)} so far")
