"""The CPU layout holds in the running app (README, "Cores on a CPU-only machine"): vLLM's
compute threads on the engine's cores, Serve's proxy and the ingress off them, the embedding
replica on every core. Read from /proc, where an operator would look."""

from __future__ import annotations

import os
from pathlib import Path

import openai
import pytest

from deployments.cpu_layout import machine_cpus, split, stack_cores
from tests.e2e.conftest import EMBED_MODEL


def processes(name: str) -> list[Path]:
    """/proc entries whose command line starts with ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes().split(b"\0")[0].decode().startswith(name):
                found.append(entry)
        except OSError:
            continue
    return found


def thread_cpus(process: Path) -> list[set[int]]:
    """The CPUs each thread of a process may run on."""
    masks = []
    for task in (process / "task").iterdir():
        try:
            masks.append(os.sched_getaffinity(int(task.name)))
        except OSError:  # a thread that has just ended
            continue
    return masks


@pytest.mark.slow
def test_engine_cores_are_the_engines_own(client: openai.OpenAI) -> None:
    layout = split(machine_cpus(), stack_cores())
    if layout is None:
        pytest.skip("one core: no layout")
    client.embeddings.create(model=EMBED_MODEL, input="the replica's threads are running")

    workers = processes("VLLM::Worker")
    assert workers, "no vLLM worker process"
    # vLLM binds each compute thread to one engine core.
    assert any(mask <= layout.engine_cpus for worker in workers for mask in thread_cpus(worker))

    for name in ("ray::ProxyActor", "ray::ServeReplica:inference:Ingress"):
        found = processes(name)
        assert found, name
        for process in found:
            assert all(mask == layout.serving_cpus for mask in thread_cpus(process)), name

    embedding = processes("ray::ServeReplica:inference:model-sentence-transformers")
    assert embedding
    for process in embedding:
        assert all(mask == layout.all_cpus for mask in thread_cpus(process))
