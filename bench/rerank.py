"""``make bench``, rerank: documents per second through ``POST /v1/rerank`` on the laptop
config's embedding model (cosine scores) against sentence-transformers in-process on the same
folder, at 1 and 4 concurrent clients.

Each request is one query and ``DOCUMENTS_PER_REQUEST`` documents (sentences of a few dozen
words). In-process does what the replica does for it: encode the query and the documents
(normalised) and take the dot products, with every core. Each side runs alone on the machine
(the stack is stopped while in-process runs), runs alternate stack, in-process, stack,
in-process; medians are reported.

Writes ``bench/results/rerank.json`` and the "Rerank" section of ``bench/REPORT.md``.
``--smoke`` runs at a tiny size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.report import replace_section
from bench.run import ROOT, Stack, machine, process, wait_until
from deployments.builtin_models import resolve
from deployments.config import AppConfig, ModelSpec, app_args_from_serve_config

LAPTOP = ROOT / "config" / "laptop.yaml"
SECTION = "## Rerank"
DOCUMENTS_PER_REQUEST = 20
WORDS = ["the", "service", "scores", "documents", "against", "a", "query", "with", "the", "cosine", "of", "their", "embeddings", "encoded", "in", "the", "replica", "batches", "while", "other", "requests", "wait", "their", "turn"]


def embedding_spec() -> ModelSpec:
    config = AppConfig.model_validate(app_args_from_serve_config(LAPTOP))
    return next(m for m in config.models if m.task == "embedding")


def requests_for(concurrency: int, smoke: bool) -> list[tuple[str, list[str]]]:
    """``10 * c`` requests (each client sends ten), each a query and its documents: distinct
    sentences of 24 words."""
    count = 2 if smoke else 10 * concurrency
    out = []
    for r in range(count):
        docs = [" ".join(WORDS[(r + d + i) % len(WORDS)] for i in range(24)) + f" {r}-{d}"
                for d in range(DOCUMENTS_PER_REQUEST)]
        out.append((f"which document is number {r}?", docs))
    return out


async def _stack_load(url: str, key: str, model: str,
                      requests: list[tuple[str, list[str]]], concurrency: int) -> float:
    queue = list(requests)
    async with httpx.AsyncClient(timeout=300, headers={"Authorization": f"Bearer {key}"}
                                 ) as client:
        async def worker() -> None:
            while queue:
                query, docs = queue.pop()
                reply = await client.post(f"{url}/v1/rerank", json={
                    "model": model, "query": query, "documents": docs,
                    "return_documents": False})
                reply.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def in_process_model(spec: ModelSpec) -> Any:
    from sentence_transformers import SentenceTransformer

    # torch's default: every core, as the replica has under the CPU layout.
    return SentenceTransformer(resolve(spec.source), device="cpu")


def _in_process_load(model: Any, requests: list[tuple[str, list[str]]],
                     concurrency: int) -> float:
    import numpy as np

    def one(request: tuple[str, list[str]]) -> None:
        query, docs = request
        vectors = model.encode([query, *docs], normalize_embeddings=True,
                               convert_to_numpy=True)
        np.argsort(-(vectors[1:] @ vectors[0]))

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, requests))
    return time.perf_counter() - start


def measure(smoke: bool, workdir: Path) -> dict[str, Any]:
    spec = embedding_spec()
    concurrencies = [1, 4]
    ours: list[dict[int, float]] = []
    theirs: list[dict[int, float]] = []
    stack = Stack(workdir)
    chat = next(m.id for m in AppConfig.model_validate(
        app_args_from_serve_config(LAPTOP)).models if m.task == "chat")
    chat_probe = {"model": chat, "messages": [{"role": "user", "content": "Hi"}],
                  "max_tokens": 1}
    probe = {"model": spec.id, "query": "q", "documents": ["d"]}
    headers = {"Authorization": f"Bearer {stack.key}"}

    def docs_per_s(wall: float, c: int) -> float:
        return len(requests_for(c, smoke)) * DOCUMENTS_PER_REQUEST / wall

    for run in range(1 if smoke else 2):
        with process(stack.command(), workdir / f"rerank-stack-{run}.log", stack.env):
            wait_until(lambda: httpx.post(f"{stack.url}/v1/rerank", json=probe, timeout=60,
                                          headers=headers).status_code == 200,
                       900, "the stack")
            # The whole app: the chat engine's start takes the CPU after the model answers.
            wait_until(lambda: httpx.post(f"{stack.url}/v1/chat/completions", timeout=30,
                                          json=chat_probe, headers=headers).status_code == 200,
                       900, "the chat model")
            ours.append({c: docs_per_s(asyncio.run(_stack_load(
                stack.url, stack.key, spec.id, requests_for(c, smoke), c)), c)
                for c in concurrencies})
        model = in_process_model(spec)
        _in_process_load(model, requests_for(1, True)[:1], 1)  # warm-up
        theirs.append({c: docs_per_s(_in_process_load(model, requests_for(c, smoke), c), c)
                       for c in concurrencies})
        del model
    rows = [{"concurrency": c, "requests": len(requests_for(c, smoke)),
             "stack_docs_per_s": statistics.median(r[c] for r in ours),
             "in_process_docs_per_s": statistics.median(r[c] for r in theirs)}
            for c in concurrencies]
    for row in rows:
        row["ratio"] = row["stack_docs_per_s"] / row["in_process_docs_per_s"]
    return {"machine": machine(), "smoke": smoke, "model": spec.id,
            "documents_per_request": DOCUMENTS_PER_REQUEST, "runs": rows}


def report_section(results: dict[str, Any]) -> str:
    lines = [
        SECTION, "",
        f"`{results['model']}` (cosine scores), requests of one query and "
        f"{results['documents_per_request']} documents of about 25 words, through "
        "`POST /v1/rerank` against sentence-transformers in-process on the same folder "
        "(encode the query and the documents, dot products); each side alone, runs "
        "alternating, medians. Documents per second: higher is faster. Written by "
        "bench/rerank.py" + (" (**smoke run: not a measurement**)." if results["smoke"]
                             else "."), "",
        "| clients | requests | stack docs/s | in-process docs/s | stack / in-process |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['concurrency']} | {r['requests']} | {r['stack_docs_per_s']:.0f} | "
              f"{r['in_process_docs_per_s']:.0f} | {r['ratio']:.2f} |"
              for r in results["runs"]]
    return "\n".join([*lines, ""])


def write_report(results: dict[str, Any], out: Path) -> None:
    """Replaces the section in REPORT.md (bench/run.py writes the rest), or appends it."""
    replace_section(out, SECTION, report_section(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--out", type=Path, default=ROOT / "bench",
                        help="where results/rerank.json and REPORT.md go")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as tmp:
        results = measure(args.smoke, Path(tmp))
    out: Path = args.out
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / "rerank.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, out)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
