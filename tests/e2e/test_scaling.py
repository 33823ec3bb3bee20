"""Scale to zero: a model with ``min_replicas: 0`` holds its first request until a replica is
up, or answers 503 with Retry-After once ``wait_for_replica_s`` has passed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from ray import serve

from deployments.app import build_app, deployment_name

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

HELD = "scale-from-zero/held"  # waits as long as it takes
SHORT = "scale-from-zero/short-wait"  # waits at most 0.5 s


def _zero_to_one(wait: float | None) -> dict[str, Any]:
    deployment: dict[str, Any] = {
        "num_cpus": 0.01,
        "autoscaling": {"min_replicas": 0, "max_replicas": 1, "upscale_delay_s": 0,
                        "downscale_delay_s": 600, "metrics_interval_s": 0.5,
                        "look_back_period_s": 1},
    }
    if wait is not None:
        deployment["wait_for_replica_s"] = wait
    return deployment


@pytest.fixture(scope="module")
def zero_url(serve_proxy_url: str) -> Iterator[str]:
    args: dict[str, Any] = {
        "ingress": {"deployment": {"num_cpus": 0.01}},
        "models": [
            {"id": model, "task": "embedding", "source": "builtin:all-minilm-l6-v2",
             "embedding": {"dimensions": 384, "max_seq_length": 256},
             "deployment": _zero_to_one(wait)}
            for model, wait in ((HELD, None), (SHORT, 0.5))
        ],
    }
    serve.run(build_app(args), name="scale-from-zero", route_prefix="/zero")
    try:
        yield f"{serve_proxy_url}/zero"
    finally:
        serve.delete("scale-from-zero")


def _running_replicas(model: str) -> int:
    app = serve.status().applications["scale-from-zero"]
    counts = app.deployments[deployment_name(model)].replica_states
    return int(counts.get("RUNNING", 0))


def test_listing_models_does_not_wake_them(zero_url: str, admin_key: str) -> None:
    client = openai.OpenAI(base_url=f"{zero_url}/v1", api_key=admin_key, max_retries=0)
    listed = {m.id: m.model_dump() for m in client.models.list()}
    assert set(listed) == {HELD, SHORT}
    for model in (HELD, SHORT):  # the contract's card, from the config
        assert listed[model]["task"] == "embedding"
        assert listed[model]["context_length"] == 256
        assert listed[model]["dimensions"] == 384
    # Nothing to wait for: the point is that no replica starts during this interval.
    time.sleep(3)
    assert _running_replicas(HELD) == 0
    assert _running_replicas(SHORT) == 0


def test_first_request_is_held_until_a_replica_is_up(zero_url: str, admin_key: str) -> None:
    client = openai.OpenAI(base_url=f"{zero_url}/v1", api_key=admin_key, max_retries=0,
                           timeout=300)
    reply = client.embeddings.create(model=HELD, input="the first request after idle")
    assert len(reply.data[0].embedding) == 384
    assert _running_replicas(HELD) == 1


def test_a_slow_start_is_a_503_with_retry_after_then_served(
        zero_url: str, admin_key: str) -> None:
    client = openai.OpenAI(base_url=f"{zero_url}/v1", api_key=admin_key, max_retries=0,
                           timeout=60)
    # Loading the model takes seconds; the model waits at most 0.5 s for a replica.
    with pytest.raises(openai.InternalServerError) as refused:
        client.embeddings.create(model=SHORT, input="too early")
    assert refused.value.status_code == 503
    assert refused.value.body["code"] == "no_replica_ready"  # type: ignore[index]
    assert refused.value.body["type"] == "overloaded_error"  # type: ignore[index]
    assert int(refused.value.response.headers["retry-after"]) > 0
    # The refused request still woke the model up: retrying as told gets an answer.
    deadline = time.monotonic() + 240
    while True:
        try:
            reply = client.embeddings.create(model=SHORT, input="after the retry")
            break
        except openai.InternalServerError as exc:
            assert exc.body["code"] == "no_replica_ready"  # type: ignore[index]
            assert time.monotonic() < deadline, "no replica came up"
            time.sleep(float(exc.response.headers["retry-after"]))
    assert len(reply.data[0].embedding) == 384


def test_a_replica_whose_model_differs_from_the_config_refuses_to_start() -> None:
    """What GET /v1/models said from the config must be what the replica serves."""
    from deployments.embeddings import EmbeddingDeployment

    spec = {"id": "wrong-card", "task": "embedding", "source": "builtin:all-minilm-l6-v2",
            "embedding": {"dimensions": 768, "max_seq_length": 256}}
    cls = EmbeddingDeployment.func_or_class  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="embedding.dimensions 768, the model has 384"):
        cls(spec)
