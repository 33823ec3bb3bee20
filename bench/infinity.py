"""The embeddings peer of ``make bench``: Infinity (``infinity-emb``), a dedicated embedding
server, on the same model folder as the stack, driven by the same closed-loop client.

Infinity pins numpy<2 and sentence-transformers<4, which the project's environment cannot
take, so it runs from its own environment (``.venvs/infinity``, made by ``make
infinity-env`` from bench/infinity-requirements.txt, exact pins) as a separate server
process. Its settings are the ones a team would pick for this model on a CPU: the torch
engine, batches of up to 32 (the laptop config's ``max_batch_size``).

The client (:func:`embed_load`) is the same for both sides: ``concurrency`` clients, each
sending its next request as soon as its last one is answered (closed loop), every request
``inputs`` sentences; it reports sentences per second and the median request latency.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venvs" / "infinity" / "bin" / "python"
BATCH_SIZE = 32
# Offline, and no usage statistics sent anywhere.
ENV = {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}


def available() -> bool:
    return PYTHON.exists()


def command(model_path: str, model_id: str, port: int) -> list[str]:
    """Infinity serving the folder ``model_path`` as ``model_id`` at /v1/embeddings."""
    return [str(PYTHON), "-m", "infinity_emb.cli", "v2", "--model-id", model_path,
            "--served-model-name", model_id, "--engine", "torch", "--device", "cpu",
            "--batch-size", str(BATCH_SIZE), "--host", "127.0.0.1", "--port", str(port),
            "--url-prefix", "/v1", "--log-level", "warning"]


# What each side is measured at: (clients, sentences per request) -> summary key suffix.
# Latency at one client, throughput at 32 (one sentence each: the comparison; 16
# each: a client that batches its own inputs).
SHAPES = {"throughput": (32, 1), "p50": (1, 1), "batch16_throughput": (32, 16),
          "batch16_p50": (1, 16)}


def requests_for(concurrency: int, inputs: int, smoke: bool) -> int:
    if smoke:
        return 2 * concurrency
    # About a thousand sentences at 32 clients; at one client enough requests for a stable
    # median.
    return max(100 if inputs == 1 else 40, (1024 if inputs == 1 else 256) // concurrency
               * concurrency)


async def embed_load(url: str, key: str | None, model: str, sentences: list[str],
                     concurrency: int, inputs: int, requests: int) -> dict[str, float]:
    """Sentences per second and p50 latency (ms) of ``requests`` POSTs to ``url``
    (``.../v1/embeddings``) from ``concurrency`` closed-loop clients."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    bodies = [json.dumps({"model": model,
                          "input": sentences[i % len(sentences)] if inputs == 1 else
                          [sentences[(i + j) % len(sentences)] for j in range(inputs)]})
              for i in range(requests)]
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        # One request per client first: connections open, the server warms up.
        await asyncio.gather(*(client.post(url, content=bodies[0]) for _ in range(concurrency)))
        queue = list(reversed(bodies))

        async def worker() -> None:
            while queue:
                body = queue.pop()
                t = time.perf_counter()
                resp = await client.post(url, content=body)
                resp.raise_for_status()
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"sentences_per_s": requests * inputs / elapsed,
            "p50_ms": statistics.median(latencies) * 1000}


def peer_runs(url: str, key: str | None, model: str, sentences: list[str], smoke: bool
              ) -> dict[str, dict[str, float]]:
    """Every shape of :data:`SHAPES` against one server."""
    out: dict[str, dict[str, float]] = {}
    for name, (concurrency, inputs) in SHAPES.items():
        out[name] = asyncio.run(embed_load(
            f"{url}/v1/embeddings", key, model, sentences, concurrency, inputs,
            requests_for(concurrency, inputs, smoke)))
    return out


def peer_summary(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
                 ) -> dict[str, dict[str, Any]]:
    """The summary keys, stack / Infinity, medians over runs; with no Infinity run (the smoke
    run, or no .venvs/infinity) each key is there with value None and why."""
    keys: dict[str, dict[str, Any]] = {}
    for name, (concurrency, inputs) in SHAPES.items():
        metric = "p50_ms" if name.endswith("p50") else "sentences_per_s"
        stack = statistics.median(run[name][metric] for run in ours)
        row: dict[str, Any] = {"concurrency": concurrency, "sentences_per_request": inputs,
                               f"stack_{metric}": round(stack, 2)}
        if theirs:
            peer = statistics.median(run[name][metric] for run in theirs)
            row[f"infinity_{metric}"] = round(peer, 2)
            row["value"] = stack / peer
        else:
            row["value"] = None
            row["skipped"] = "Infinity not run (smoke run, or no .venvs/infinity)"
        keys[f"embed_{name}_ratio_vs_infinity"] = row
    return keys
