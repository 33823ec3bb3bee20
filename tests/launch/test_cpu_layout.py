"""The CPU layout: which cores the chat engine gets and which the rest of the stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch import cpu_layout
from launch.cpu_layout import LogicalCPU, machine_cpus, split

ROOT = Path(__file__).resolve().parents[2]


def launch(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m launch.cpu_layout ARGV``, as from a shell with no binding of its own."""
    base = {k: v for k, v in os.environ.items() if k != cpu_layout.BIND_ENV}
    return subprocess.run([sys.executable, "-m", "launch.cpu_layout", *argv], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, check=False)


def cpus(*rows: tuple[int, int, int]) -> list[LogicalCPU]:
    """(cpu id, core id, NUMA node) rows, one package."""
    return [LogicalCPU(cpu, (0, core), node) for cpu, core, node in rows]


def test_two_cores_engine_on_the_first_stack_on_the_second() -> None:
    layout = split(cpus((0, 0, 0), (1, 1, 0)))
    assert layout is not None
    assert layout.engine_bind == "0"
    assert layout.serving_cpus == {1}
    assert layout.all_cpus == {0, 1}


def test_smt_one_logical_cpu_per_compute_core_and_siblings_stay_off_the_stack() -> None:
    # 4 cores, 2 threads each: CPU n and n+4 are siblings (Linux's usual numbering).
    layout = split(cpus(*[(i, i % 4, 0) for i in range(8)]))
    assert layout is not None
    assert layout.engine_bind == "4,5,6"  # the last sibling of cores 0-2, as vLLM picks
    assert layout.engine_cpus == {4, 5, 6}
    assert layout.serving_cpus == {3, 7}  # both threads of the last core


def test_engine_stays_on_the_first_numa_node() -> None:
    layout = split(cpus(*[(i, i, 0 if i < 4 else 1) for i in range(8)]))
    assert layout is not None
    assert layout.engine_bind == "0,1,2"
    assert layout.serving_cpus == {3, 4, 5, 6, 7}


def test_more_cores_for_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    layout = split(cpus(*[(i, i, 0) for i in range(8)]), stack_cores=3)
    assert layout is not None
    assert layout.engine_bind == "0,1,2,3,4"
    assert layout.serving_cpus == {5, 6, 7}
    assert split(cpus(*[(i, i, 0) for i in range(8)]), stack_cores=8) is None
    monkeypatch.setenv(cpu_layout.STACK_CORES_ENV, "3")
    assert cpu_layout.stack_cores() == 3
    for bad in ("0", "two", "-1", ""):
        monkeypatch.setenv(cpu_layout.STACK_CORES_ENV, bad)
        with pytest.raises(ValueError, match="INFERENCE_STACK_CORES"):
            cpu_layout.stack_cores()


def test_launcher_refuses_a_bad_core_count() -> None:
    out = launch("config/laptop.yaml", "--", "true", **{cpu_layout.STACK_CORES_ENV: "zero"})
    assert out.returncode == 2 and "INFERENCE_STACK_CORES" in out.stderr


def test_one_core_changes_nothing() -> None:
    assert split(cpus((0, 0, 0))) is None
    assert split(cpus((0, 0, 0), (1, 0, 0))) is None  # one core, two threads
    assert split([]) is None


def test_topology_is_read_from_sysfs(tmp_path: Path) -> None:
    for cpu, core, node in ((0, 0, 0), (1, 0, 0), (2, 1, 0), (3, 1, 0)):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "core_id").write_text(f"{core}\n")
        (topology / "physical_package_id").write_text("0\n")
        (tmp_path / f"cpu{cpu}" / f"node{node}").mkdir()
    found = machine_cpus({0, 1, 2, 3}, sys_cpu=tmp_path)
    assert [c.physical_core for c in found] == [(0, 0), (0, 0), (0, 1), (0, 1)]
    layout = split(found)
    assert layout is not None and layout.engine_bind == "1" and layout.serving_cpus == {2, 3}


def test_unreadable_topology_counts_each_cpu_as_a_core(tmp_path: Path) -> None:
    assert [c.physical_core for c in machine_cpus({0, 1}, sys_cpu=tmp_path)] == [(0, 0), (0, 1)]


def test_only_configs_with_a_chat_model_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cpu_layout.BIND_ENV, raising=False)
    assert cpu_layout.has_cpu_chat_model(ROOT / "config" / "laptop.yaml")
    assert not cpu_layout.has_cpu_chat_model(ROOT / "config" / "gpu-cluster.yaml")
    assert cpu_layout.plan(ROOT / "config" / "gpu-cluster.yaml") is None


def test_a_users_own_engine_binding_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu_layout.BIND_ENV, "nobind")
    assert cpu_layout.plan(ROOT / "config" / "laptop.yaml") is None


LAUNCHED = ("import json, os; print(json.dumps([sorted(os.sched_getaffinity(0)), "
            "os.environ.get('VLLM_CPU_OMP_THREADS_BIND')]))")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_launcher_pins_the_command_and_gives_the_engine_the_rest() -> None:
    out = launch("config/laptop.yaml", "--", sys.executable, "-c", LAUNCHED)
    assert out.returncode == 0, out.stderr
    affinity, bind = json.loads(out.stdout)
    expected = split(machine_cpus())
    assert expected is not None
    assert set(affinity) == expected.serving_cpus
    assert bind == expected.engine_bind
    assert not set(affinity) & {int(cpu) for cpu in bind.split(",")}
    assert "CPU layout: chat engine on CPU" in out.stderr


def test_launcher_usage_error() -> None:
    out = launch("config/laptop.yaml")
    assert out.returncode == 2 and "usage" in out.stderr


WIDENED = """
import os
from launch import cpu_layout
every = sorted(os.sched_getaffinity(0))
os.sched_setaffinity(0, every[-1:])
os.environ[cpu_layout.MODEL_CPUS_ENV] = ",".join(map(str, every))
cpu_layout.use_all_cpus()
print(sorted(os.sched_getaffinity(0)) == every)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_model_compute_takes_every_cpu_back() -> None:
    out = subprocess.run([sys.executable, "-c", WIDENED], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "True"


def test_without_a_layout_model_compute_keeps_its_cpus(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.delenv(cpu_layout.MODEL_CPUS_ENV, raising=False)
    before = os.sched_getaffinity(0)
    cpu_layout.use_all_cpus()
    assert os.sched_getaffinity(0) == before
