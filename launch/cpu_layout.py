"""Which cores a CPU-only machine gives the chat engine, and which the rest of the stack.

vLLM's CPU backend pins its compute threads to cores (one logical CPU per physical core of
the first NUMA node) and leaves the last core "reserved for other processes" (its scheduler).
Nothing keeps the other processes of the stack off the compute cores: Ray's daemons, Serve's
proxy and controller, the ingress and the chat replica itself then preempt the pinned compute
thread, and every preemption stalls a whole decode step (what that cost, and what the
layout bought: docs/performance.md, "CPU layout").

So, before Ray starts, the launcher gives the engine the compute cores explicitly
(``VLLM_CPU_OMP_THREADS_BIND``) and pins itself, and with it every process Ray and Serve
start, to the other cores. The embedding replicas are model compute too: they take every
core back (:func:`use_all_cpus`). A user's own ``VLLM_CPU_OMP_THREADS_BIND`` (``nobind``
included) is left alone, and so is everything on a machine whose chat models run on GPUs.
``INFERENCE_STACK_CORES`` sets how many physical cores the stack keeps (default 1).

``python -m launch.cpu_layout CONFIG -- COMMAND...`` applies the layout for the Serve
config CONFIG, then runs COMMAND in its place (``make serve``, the benchmark).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
# The CPUs the launcher had before it pinned the stack: model compute outside vLLM takes them.
MODEL_CPUS_ENV = "INFERENCE_MODEL_CPUS"
STACK_CORES_ENV = "INFERENCE_STACK_CORES"
SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class LogicalCPU:
    id: int
    physical_core: tuple[int, int]  # (package, core id)
    numa_node: int


@dataclass(frozen=True)
class Layout:
    engine_bind: str              # VLLM_CPU_OMP_THREADS_BIND: one logical CPU per compute core
    serving_cpus: frozenset[int]  # everything else of the stack runs here
    all_cpus: frozenset[int]      # model compute outside vLLM (embeddings) runs here

    @property
    def engine_cpus(self) -> frozenset[int]:
        return frozenset(int(cpu) for cpu in self.engine_bind.split(","))


def _read_int(path: Path, default: int) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return default


def machine_cpus(allowed: set[int] | None = None, sys_cpu: Path = SYS_CPU) -> list[LogicalCPU]:
    """The CPUs this process may run on, with their physical core and NUMA node (from sysfs;
    a CPU whose topology cannot be read counts as a core of its own on node 0)."""
    cpus = []
    for cpu in sorted(os.sched_getaffinity(0) if allowed is None else allowed):
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        package = _read_int(topology / "physical_package_id", 0)
        core = _read_int(topology / "core_id", cpu)
        nodes = sorted(p.name for p in (sys_cpu / f"cpu{cpu}").glob("node[0-9]*"))
        node = int(nodes[0].removeprefix("node")) if nodes else 0
        cpus.append(LogicalCPU(cpu, (package, core), node))
    return cpus


def split(cpus: list[LogicalCPU], stack_cores: int = 1) -> Layout | None:
    """The engine gets the physical cores of the first NUMA node but its last
    ``stack_cores``, one logical CPU each (vLLM's own choice); the stack gets every other
    CPU. None when that leaves the engine no core."""
    if not cpus:
        return None
    first_node = min(c.numa_node for c in cpus)
    cores: dict[tuple[int, int], list[int]] = {}
    for c in cpus:
        if c.numa_node == first_node:
            cores.setdefault(c.physical_core, []).append(c.id)
    ordered = sorted(cores.values(), key=min)
    if len(ordered) <= stack_cores:
        return None
    compute = ordered[:-stack_cores]
    taken = {cpu for siblings in compute for cpu in siblings}
    return Layout(engine_bind=",".join(str(max(siblings)) for siblings in compute),
                  serving_cpus=frozenset(c.id for c in cpus if c.id not in taken),
                  all_cpus=frozenset(c.id for c in cpus))


def has_cpu_chat_model(serve_config: Path) -> bool:
    from deployments.config import AppConfig, app_args_from_serve_config

    config = AppConfig.model_validate(app_args_from_serve_config(serve_config))
    return any(m.task == "chat" and not m.deployment.num_gpus for m in config.models)


def stack_cores() -> int:
    """``INFERENCE_STACK_CORES``: physical cores for everything but the chat engine (default
    1, what vLLM itself reserves). More suits a many-core CPU server, whose proxy and ingress
    may need more than one core under many streams."""
    raw = os.environ.get(STACK_CORES_ENV, "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{STACK_CORES_ENV} must be a whole number of cores, at least 1; "
                         f"got {raw!r}")
    return int(raw)


def plan(serve_config: Path) -> Layout | None:
    """The layout to apply before Ray starts for this config, or None to change nothing."""
    if BIND_ENV in os.environ or not has_cpu_chat_model(serve_config):
        return None
    return split(machine_cpus(), stack_cores())


def apply(layout: Layout) -> None:
    """Set the engine's cores for every process started from here, and run this process (so
    also Ray and everything it starts) on the other cores."""
    os.environ[BIND_ENV] = layout.engine_bind
    os.environ[MODEL_CPUS_ENV] = ",".join(map(str, sorted(layout.all_cpus)))
    os.sched_setaffinity(0, layout.serving_cpus)


@contextlib.contextmanager
def applied(serve_config: Path) -> Iterator[Layout | None]:
    """The layout for what starts inside the block (Ray, from a Python process such as the
    test suite's); this process gets its own environment and CPUs back afterwards."""
    layout = plan(serve_config)
    if layout is None:
        yield None
        return
    saved_env = {name: os.environ.get(name) for name in (BIND_ENV, MODEL_CPUS_ENV)}
    saved_cpus = os.sched_getaffinity(0)
    apply(layout)
    try:
        yield layout
    finally:
        os.sched_setaffinity(0, saved_cpus)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def model_cpus() -> set[int] | None:
    """Every CPU the launcher had, when a layout was applied (model compute outside vLLM
    runs there); None without a layout. Changes nothing: see :func:`use_all_cpus`."""
    listed = os.environ.get(MODEL_CPUS_ENV, "")
    return {int(cpu) for cpu in listed.split(",")} if listed else None


def use_all_cpus() -> set[int] | None:
    """For model compute outside vLLM (the embedding replicas), when a layout was applied:
    every CPU the launcher had, compute cores included, for all threads of this process (a
    mask is per thread; threads started later inherit it); returns them. Without a layout,
    nothing (None)."""
    every = model_cpus()
    if every is None:
        return None
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), every)
        except (ProcessLookupError, OSError):  # a thread that has just ended
            continue
    return every


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m launch.cpu_layout SERVE_CONFIG -- COMMAND [ARGS...]",
              file=sys.stderr)
        return 2
    try:
        layout = plan(Path(argv[0]))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if layout is not None:
        apply(layout)
        print(f"CPU layout: chat engine on CPU {layout.engine_bind}, the rest of the stack on "
              f"CPU {','.join(map(str, sorted(layout.serving_cpus)))}", file=sys.stderr)
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
