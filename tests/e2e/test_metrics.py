"""The service's metrics appear on Ray's metrics endpoint (Prometheus format)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, METRICS_PORT

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

# Batches of one input, and all batches. (Ray exports a histogram's buckets and count
# exactly; its _sum is estimated from bucket midpoints, so it cannot count inputs.)
BATCH_SERIES = re.compile(
    r'^\w*inference_embedding_batch_size_(bucket|count)\{([^}]*)\} (\S+)$', re.MULTILINE)

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


def embedding_batches() -> tuple[float, float]:
    """(batches of one input, all batches) for the built-in embedding model, all replicas."""
    text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
    alone = batches = 0.0
    for kind, labels, value in BATCH_SERIES.findall(text):
        if f'model="{EMBED_MODEL}"' not in labels:
            continue
        if kind == "count":
            batches += float(value)
        elif re.search(r'le="1(\.0)?"', labels):
            alone += float(value)
    return alone, batches


def settled_batches() -> tuple[float, float]:
    """The counts once they stand still: Ray exports every 10 s, so recent batches may not
    be on the endpoint yet."""
    before = embedding_batches()
    for _ in range(8):
        time.sleep(12)
        now = embedding_batches()
        if now == before:
            break
        before = now
    return before


def test_concurrent_embedding_requests_share_batches(client: openai.OpenAI) -> None:
    """The contract's dynamic batching, seen where an operator would look: concurrent
    single-sentence requests are encoded in fewer batches than sentences."""
    alone_before, batches_before = settled_batches()
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(
            lambda i: client.embeddings.create(model=EMBED_MODEL, input=f"sentence {i}"),
            range(48)))
    assert all(len(r.data) == 1 for r in replies)
    alone, batches = settled_batches()
    shared = (batches - batches_before) - (alone - alone_before)
    assert 0 < batches - batches_before < 48, "every sentence was encoded in a batch of its own"
    assert shared >= 1
