"""The request contract over generated requests, against the HTTP edge in-process (over a
test double of the models): thousands of requests drawn from OpenAI's API description, valid
and broken, each answered with a success or an error in the envelope, never a 5xx.

Seeded (``derandomize``): every run sends the same requests, so a failure in CI reproduces.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from tests.contract.generated import Generated, Shape, check_reply, declared_only, requests
from tests.support.models_double import CHAT, EMBED

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
CHAT_FIELDS = declared_only("/chat/completions")
EMBED_FIELDS = declared_only("/embeddings")
COMPLETION_FIELDS = declared_only("/completions")
RESPONSES_FIELDS = declared_only("/responses")
# (method, path, generation mode, model pinned, body shaped, cases): at least 2,000 in all.
RUNS: list[tuple[str, str, GenerationMode, str | None, Shape | None, int]] = [
    ("POST", "/chat/completions", POSITIVE, None, None, 200),
    ("POST", "/chat/completions", POSITIVE, CHAT, None, 200),
    ("POST", "/chat/completions", POSITIVE, CHAT, CHAT_FIELDS, 400),
    ("POST", "/chat/completions", POSITIVE, EMBED, None, 50),   # a model of the other task
    ("POST", "/chat/completions", NEGATIVE, None, None, 300),
    ("POST", "/embeddings", POSITIVE, None, None, 150),
    ("POST", "/embeddings", POSITIVE, EMBED, None, 150),
    ("POST", "/embeddings", POSITIVE, EMBED, EMBED_FIELDS, 250),
    ("POST", "/embeddings", POSITIVE, CHAT, None, 50),
    ("POST", "/embeddings", NEGATIVE, None, None, 200),
    ("POST", "/completions", POSITIVE, None, None, 100),
    ("POST", "/completions", POSITIVE, CHAT, None, 100),
    ("POST", "/completions", POSITIVE, CHAT, COMPLETION_FIELDS, 250),
    ("POST", "/completions", POSITIVE, EMBED, None, 30),
    ("POST", "/completions", NEGATIVE, None, None, 150),
    ("POST", "/responses", POSITIVE, None, None, 100),
    ("POST", "/responses", POSITIVE, CHAT, None, 200),
    ("POST", "/responses", POSITIVE, CHAT, RESPONSES_FIELDS, 200),
    ("POST", "/responses", NEGATIVE, None, None, 150),
    ("GET", "/responses/{response_id}", POSITIVE, None, None, 30),
    ("GET", "/responses/{response_id}", NEGATIVE, None, None, 30),
    ("DELETE", "/responses/{response_id}", POSITIVE, None, None, 20),
    ("GET", "/responses/{response_id}/input_items", POSITIVE, None, None, 30),
    ("GET", "/responses/{response_id}/input_items", NEGATIVE, None, None, 30),
    ("GET", "/models", POSITIVE, None, None, 20),
    ("GET", "/models", NEGATIVE, None, None, 20),
    ("GET", "/models/{model}", POSITIVE, None, None, 100),
    ("GET", "/models/{model}", NEGATIVE, None, None, 100),
]
SENT: list[int] = []


def seeded(cases: int) -> settings:
    return settings(max_examples=cases, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


def send(client: TestClient, request: Generated) -> None:
    headers = {"Content-Type": "application/json"} if request.content is not None else {}
    reply = client.request(request.method, request.path, content=request.content,
                           params=request.query, headers=headers)
    check_reply(request, reply.status_code, reply.headers.get("content-type", ""),
                reply.content, sdk_types=False)
    SENT.append(reply.status_code)


@pytest.mark.parametrize(
    ("method", "path", "mode", "model", "shape", "cases"), RUNS,
    ids=[f"{m} {p} {g.value} {x or 'any model'}{' declared fields' if f else ''}"
         for m, p, g, x, f, _ in RUNS])
def test_every_generated_request_is_a_success_or_an_error_in_the_envelope(
        client: TestClient, method: str, path: str, mode: GenerationMode, model: str | None,
        shape: Shape | None, cases: int) -> None:
    before = len(SENT)

    @seeded(cases)
    @given(requests(method, path, mode, model, shape))
    def run(request: Generated) -> None:
        send(client, request)

    run()
    # Hypothesis stops early only when it has drawn every distinct request (GET /v1/models).
    assert len(SENT) - before >= min(cases, 10)


@seeded(100)
@given(st.dictionaries(st.sampled_from(["since", "model", "limit", "user"]),
                       st.one_of(st.text(max_size=20), st.dates().map(str))))
def test_usage_with_generated_query_parameters(client: TestClient, query: dict[str, Any]) -> None:
    """``GET /v1/usage`` is this service's own (not in OpenAI's description)."""
    request = Generated("GET", "/v1/usage", None, query)
    send(client, request)


def test_at_least_2000_generated_requests_were_sent() -> None:
    """Runs after the generated tests of this module (pytest keeps the module's order)."""
    if len(SENT) < 2000:
        pytest.skip("only part of the module was selected")
    assert all(status < 500 for status in SENT)
    statuses = collections.Counter(status // 100 * 100 for status in SENT)
    print(f"{len(SENT)} generated requests: {dict(statuses)}")
    assert statuses[200] and statuses[400], "both successes and refusals were generated"
