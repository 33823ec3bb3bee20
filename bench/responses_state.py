"""What one stored turn of the Responses API costs: the bytes it adds to the store, and the
latency the state adds to a request, on the laptop config's chat model.

Latency, each pair with the same prompt, so that the engine's work is the same and the
difference is the state's (``max_output_tokens`` 1, temperature 0, one client, the pairs'
requests interleaved, medians and 90th percentiles of ``ROUNDS`` each):
- ``store`` false vs true: the write of the response and its input items;
- a conversation sent whole (``store`` false) vs continued by ``previous_response_id`` (the
  read of the stored turn, and the write of the new one).

Bytes: ``SIZED_TURNS`` stored turns of a sentence in and up to 64 tokens out: the JSON kept
per turn (response and input items) and what the store's files grew by per turn.

Writes ``bench/results/responses_state.json`` and the "Responses state" section of
``bench/REPORT.md``. ``--smoke`` runs at a tiny size.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from bench.report import replace_section
from bench.run import ROOT, Stack, machine, process, wait_until
from deployments.config import AppConfig, app_args_from_serve_config

LAPTOP = ROOT / "config" / "laptop.yaml"
SECTION = "## Responses state"
ROUNDS = 40
SIZED_TURNS = 20
FIRST = "My name is Ada and I live in Paris. Say hello to me."
NEXT = "What is my name?"


def chat_model() -> str:
    config = AppConfig.model_validate(app_args_from_serve_config(LAPTOP))
    return next(m.id for m in config.models if m.task == "chat")


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": statistics.median(ordered),
            "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]}


def store_bytes(state: Path) -> int:
    """The store's files, after a checkpoint has moved the log into the database."""
    db = sqlite3.connect(state / "control-plane.sqlite3", timeout=30)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return sum(p.stat().st_size for p in state.glob("control-plane.sqlite3*"))


def kept_json_bytes(state: Path) -> tuple[int, int]:
    db = sqlite3.connect(state / "control-plane.sqlite3", timeout=30)
    try:
        rows, size = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(response) + "
                                "LENGTH(input_items)), 0) FROM responses").fetchone()
    finally:
        db.close()
    return int(rows), int(size)


def measure(smoke: bool, workdir: Path) -> dict[str, Any]:
    model = chat_model()
    stack = Stack(workdir)
    rounds, sized = (3, 3) if smoke else (ROUNDS, SIZED_TURNS)
    probe = {"model": model, "input": "Hi", "max_output_tokens": 1, "store": False}
    headers = {"Authorization": f"Bearer {stack.key}"}
    with process(stack.command(), workdir / "responses-stack.log", stack.env):
        wait_until(lambda: httpx.post(f"{stack.url}/v1/responses", json=probe, timeout=60,
                                      headers=headers).status_code == 200, 900, "the stack")
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0,
                               timeout=120)
        args: dict[str, Any] = {"model": model, "max_output_tokens": 1, "temperature": 0}
        first = client.responses.create(input=FIRST, **args)
        whole: Any = [{"role": "user", "content": FIRST},
                 {"role": "assistant", "content": first.output_text},
                 {"role": "user", "content": NEXT}]
        cases: dict[str, Callable[[], Any]] = {
            "store_false": lambda: client.responses.create(input=FIRST, store=False, **args),
            "store_true": lambda: client.responses.create(input=FIRST, store=True, **args),
            "whole_conversation": lambda: client.responses.create(input=whole, store=False,
                                                                  **args),
            "previous_response_id": lambda: client.responses.create(
                input=NEXT, previous_response_id=first.id, store=True, **args),
        }
        for call in cases.values():  # warm-up
            call()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, call in cases.items():
                samples[name].append(timed(call))
        rows_before, json_before = kept_json_bytes(stack.state)
        files_before = store_bytes(stack.state)
        for i in range(sized):
            client.responses.create(model=model, temperature=0, max_output_tokens=64,
                                    input=f"Tell me one fact about the number {i}.")
        rows_after, json_after = kept_json_bytes(stack.state)
        files_after = store_bytes(stack.state)
    latency = {name: summary(values) for name, values in samples.items()}
    turns = rows_after - rows_before
    return {
        "machine": machine(), "smoke": smoke, "model": model, "rounds": rounds,
        "latency": latency,
        "store_write_ms": latency["store_true"]["median_ms"]
        - latency["store_false"]["median_ms"],
        "continuation_ms": latency["previous_response_id"]["median_ms"]
        - latency["whole_conversation"]["median_ms"],
        "sized_turns": turns,
        "json_bytes_per_turn": (json_after - json_before) / turns,
        "file_bytes_per_turn": (files_after - files_before) / turns,
    }


def section(result: dict[str, Any]) -> str:
    lines = [SECTION, "",
             (f"{result['machine']}; {result['model']}, one client, max_output_tokens 1, "
             f"{result['rounds']} interleaved rounds (bench/responses_state.py)."), "",
             "| request | median ms | p90 ms |", "|---|---|---|"]
    for name, row in result["latency"].items():
        lines.append(f"| {name} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} |")
    lines += ["",
              (f"The store's write adds {result['store_write_ms']:.1f} ms (median); continuing "
              f"by previous_response_id instead of sending the conversation whole adds "
              f"{result['continuation_ms']:.1f} ms. One stored turn (a sentence in, up to 64 "
              f"tokens out; {result['sized_turns']} turns) keeps "
              f"{result['json_bytes_per_turn']:.0f} bytes of JSON and grows the store's files "
              f"by {result['file_bytes_per_turn']:.0f} bytes."), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.smoke, Path(tmp))
    print(json.dumps(result, indent=2))
    if not args.smoke:
        out = ROOT / "bench"
        (out / "results").mkdir(exist_ok=True)
        (out / "results" / "responses_state.json").write_text(json.dumps(result, indent=2))
        replace_section(out, SECTION, section(result))


if __name__ == "__main__":
    main()
