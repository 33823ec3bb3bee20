"""A chat replica killed outright while Ray runs (a crash, Ray's memory monitor) takes its
vLLM engine processes with it, and Serve's replacement serves again. Read from /proc. (Ray ends a dead worker's process group;
when Ray's own processes are killed too, launch/engine_reaper.py does it:
tests/deployments/test_make_serve.py.)"""

from __future__ import annotations

import os
import signal
import time

import openai
import pytest

from deployments.app import deployment_name
from launch.engine_reaper import descendants, running
from tests.support.e2e import CHAT_MODEL, processes

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models


def test_a_killed_chat_replica_leaves_no_engine_behind(client: openai.OpenAI) -> None:
    ask = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    client.chat.completions.create(**ask)  # type: ignore[call-overload]
    [replica] = processes(f"ray::ServeReplica:inference:{deployment_name(CHAT_MODEL)}")
    left = descendants(replica)  # the engine core, its worker, the watcher
    assert len(left) >= 3, left

    os.kill(replica, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(map(running, left)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in left if running(pid)], "engine processes outlived the replica"

    # Serve starts a replacement; the model answers again.
    deadline = time.monotonic() + 600
    while True:
        try:
            reply = client.chat.completions.create(**ask)  # type: ignore[call-overload]
            break
        except (openai.APIStatusError, openai.APIConnectionError, openai.APITimeoutError):
            assert time.monotonic() < deadline, "no replacement replica"
            time.sleep(2)
    assert reply.choices[0].message.content is not None
