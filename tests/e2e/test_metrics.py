"""The service's metrics appear on Ray's metrics endpoint (Prometheus format)."""

from __future__ import annotations

import time

import httpx
import openai

from tests.e2e.conftest import CHAT_MODEL, EMBED_MODEL, METRICS_PORT

EXPECTED = ["inference_requests", "inference_prompt_tokens", "inference_completion_tokens",
            "inference_request_latency_seconds", "inference_time_to_first_token_seconds",
            "inference_inter_token_latency_seconds", "inference_embedding_batch_size",
            "inference_embedding_queue_wait_seconds"]


def test_metrics_are_exported_by_ray(client: openai.OpenAI) -> None:
    list(client.chat.completions.create(model=CHAT_MODEL, max_tokens=5, stream=True,
                                        messages=[{"role": "user", "content": "hi"}]))
    client.embeddings.create(model=EMBED_MODEL, input=["a", "b"])
    missing = EXPECTED
    deadline = time.monotonic() + 60  # Ray exports on an interval
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
        missing = [name for name in EXPECTED if name not in text]
    assert not missing, f"not on Ray's metrics endpoint: {missing}"
    assert f'model="{CHAT_MODEL}"' in text and 'status="200"' in text
