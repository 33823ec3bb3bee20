"""`make bench` at tiny size: it produces the JSON with every key and the report.
No timing thresholds here: timings belong to the benchmark, not to pass/fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import main

KEYS = ["chat_throughput_ratio", "chat_ttft_p50_ratio", "chat_itl_p50_ratio",
        "embed_throughput_ratio_vs_best_batch", "ingress_overhead_ms_p50", "cold_start_s",
        "embed_http_floor_ratio_vs_best_batch", "embed_batch_ceiling_ratio_vs_best_batch"]
# Against Infinity: the smoke run leaves Infinity out (its environment and start would cost
# the suite minutes), so these are there by name, with the stack's side measured.
PEER_KEYS = ["embed_throughput_ratio_vs_infinity", "embed_p50_ratio_vs_infinity",
             "embed_batch16_throughput_ratio_vs_infinity", "embed_batch16_p50_ratio_vs_infinity"]


@pytest.mark.slow
def test_benchmark_smoke_run_writes_every_key(tmp_path: Path) -> None:
    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results" / "latest.json").read_text())
    for key in KEYS:
        assert isinstance(results[key]["value"], float), key
        assert results[key]["value"] > 0 or key == "ingress_overhead_ms_p50", key
    for key in KEYS[:5] + KEYS[6:]:  # cold_start_s has no concurrency
        assert "concurrency" in results[key]
    for key in PEER_KEYS:
        assert results[key]["value"] is None and "skipped" in results[key], key
        assert {"concurrency", "sentences_per_request"} <= results[key].keys(), key
        stack = [v for k, v in results[key].items() if k.startswith("stack_")]
        assert len(stack) == 1 and stack[0] > 0, key
    report = (tmp_path / "REPORT.md").read_text()
    assert all(key in report for key in KEYS + PEER_KEYS)
    assert (tmp_path / "chat.png").stat().st_size > 1000
    assert (tmp_path / "embeddings.png").stat().st_size > 1000
