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


@pytest.mark.slow
def test_benchmark_smoke_run_writes_every_key(tmp_path: Path) -> None:
    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results" / "latest.json").read_text())
    for key in KEYS:
        assert isinstance(results[key]["value"], float), key
        assert results[key]["value"] > 0 or key == "ingress_overhead_ms_p50", key
    for key in KEYS[:5] + KEYS[6:]:  # cold_start_s has no concurrency
        assert "concurrency" in results[key]
    report = (tmp_path / "REPORT.md").read_text()
    assert all(key in report for key in KEYS)
    assert (tmp_path / "chat.png").stat().st_size > 1000
    assert (tmp_path / "embeddings.png").stat().st_size > 1000
