"""The simulated multi-node GPU cluster (``make cluster-demo``): Ray's autoscaler over fake
GPU nodes scales the chat model up and down with load, and faults cost only the requests on
what was killed. Runs the demo as a user would and checks what it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployments.config import AppConfig, app_args_from_serve_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("cluster-demo")
    done = subprocess.run([sys.executable, "-m", "bench.cluster_demo", "--out", str(out)],
                          cwd=ROOT, timeout=2400, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert (out / "cluster-demo.png").stat().st_size > 10_000
    assert "| fault |" in (out / "cluster-demo.md").read_text()
    result: dict[str, Any] = json.loads((out / "cluster-demo.json").read_text())
    return result


def chat_scaling() -> tuple[int, int, int]:
    config = AppConfig.model_validate(
        app_args_from_serve_config(ROOT / "config" / "cluster-demo.yaml"))
    chat = next(m for m in config.models if m.task == "chat")
    assert chat.deployment.autoscaling is not None and chat.deployment.num_gpus == 1
    scaling = chat.deployment.autoscaling
    return scaling.min_replicas, scaling.max_replicas, chat.deployment.max_ongoing_requests


def test_replicas_and_nodes_go_up_under_load_one_replica_per_gpu_node(
        demo: dict[str, Any]) -> None:
    low, top, _ = chat_scaling()
    timeline = demo["timeline"]
    assert timeline[0]["worker_nodes"] <= low + 1
    peak = max(timeline, key=lambda s: s["replicas_running"])
    assert peak["replicas_running"] == top
    assert peak["nodes_with_replicas"] == top  # spread: one GPU each, one per node
    assert max(s["worker_nodes"] for s in timeline) >= top
    assert demo["scale_up_s"] > 0


def test_replicas_and_nodes_go_back_down_when_load_stops(demo: dict[str, Any]) -> None:
    low, _, _ = chat_scaling()
    last = demo["timeline"][-1]
    assert last["replicas_running"] == low
    assert last["worker_nodes"] == low
    assert demo["scale_down_s"] > 0


def test_each_fault_costs_at_most_the_requests_in_flight_on_what_was_killed(
        demo: dict[str, Any]) -> None:
    _, _, per_replica = chat_scaling()
    kinds = [f["fault"] for f in demo["faults"]]
    assert kinds == ["replica process killed", "engine process killed", "worker node killed"]
    for fault in demo["faults"]:
        # One replica was lost each time: at most what it was working on fails.
        assert fault["failed"] <= per_replica, fault
        assert fault["requests_during"] > fault["failed"], fault  # the others kept serving
        for failure in fault["failures"]:
            # A clean error: the OpenAI envelope with a 5xx status, never a hang or a reset.
            assert failure["status"] is not None and failure["status"] >= 500, failure
            assert failure["error_type"] in ("overloaded_error", "server_error",
                                             "api_error"), failure
            assert failure["message"], failure
        assert fault["recovered_after_s"] > 0


def test_no_usage_record_is_lost(demo: dict[str, Any]) -> None:
    assert demo["requests"]["ok"] > 0
    assert demo["usage_ledger_requests"] == demo["requests"]["ok"]
