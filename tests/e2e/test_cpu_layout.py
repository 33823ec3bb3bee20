"""The CPU layout holds in the running app (docs/operations.md, "CPU layout"): vLLM's
compute threads on the engine's cores, Serve's proxy and the ingress off them, the embedding
model's encoding on every core (its replica's, or its threads in the ingress). Read from /proc, where an operator would look."""

from __future__ import annotations

import os
from pathlib import Path

import openai
import pytest

from deployments.app import deployment_name
from launch.cpu_layout import machine_cpus, split, stack_cores
from launch.engine_reaper import descendants
from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, ROOT, processes

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models


def thread_cpus(pid: int) -> list[set[int]]:
    """The CPUs each thread of a process may run on."""
    masks = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            masks.append(os.sched_getaffinity(int(task.name)))
        except OSError:  # a thread that has just ended
            continue
    return masks


def test_engine_cores_are_the_engines_own(client: openai.OpenAI) -> None:
    layout = split(machine_cpus(), stack_cores())
    if layout is None:
        pytest.skip("one core: no layout")
    client.embeddings.create(model=EMBED_MODEL, input="the replica's threads are running")

    replica = processes(f"ray::ServeReplica:inference:{deployment_name(CHAT_MODEL)}")
    assert replica, "no chat replica process"
    # vLLM's engine core and its worker (found by parent, not by the title vLLM sets: in one
    # run setproctitle left the worker's unchanged).
    engine = [pid for parent in replica for pid in descendants(parent)]
    assert engine, "the chat replica runs no engine process"
    # vLLM binds each compute thread to one engine core.
    assert any(mask <= layout.engine_cpus for process in engine for mask in thread_cpus(process))

    proxy = processes("ray::ProxyActor")
    assert proxy
    for process in proxy:
        assert all(mask == layout.serving_cpus for mask in thread_cpus(process))

    ingress = processes("ray::ServeReplica:inference:Ingress")
    assert ingress
    if embedding_placement() == "ingress":
        # The model encodes inside the ingress: its encoding threads take every core, the
        # rest of the ingress (its event loop on the main thread first) stays off the
        # engine's.
        for process in ingress:
            masks = thread_cpus(process)
            assert os.sched_getaffinity(process) == layout.serving_cpus
            assert layout.all_cpus in masks
            assert all(mask in (layout.serving_cpus, layout.all_cpus) for mask in masks)
        return
    for process in ingress:
        assert all(mask == layout.serving_cpus for mask in thread_cpus(process))
    embedding = processes(f"ray::ServeReplica:inference:{deployment_name(EMBED_MODEL)}")
    assert embedding
    for process in embedding:
        assert all(mask == layout.all_cpus for mask in thread_cpus(process))


def embedding_placement() -> str:
    """Where the laptop config encodes the built-in embedding model."""
    from deployments.config import AppConfig, app_args_from_serve_config

    config = AppConfig.model_validate(app_args_from_serve_config(ROOT / "config" / "laptop.yaml"))
    [spec] = (m for m in config.models if m.id == EMBED_MODEL)
    assert spec.embedding is not None
    return spec.embedding.placement
