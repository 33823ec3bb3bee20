"""launch/engine_reaper.py: a killed replica's engine processes do not outlive it.
Real processes: a stand-in for the replica (a Python process that starts a child and the
reaper), killed with SIGKILL as Ray's memory monitor or `ray stop --force` would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from launch import engine_reaper
from launch.engine_reaper import running
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

REPLICA = """
import os, subprocess, sys, time
from launch import engine_reaper
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
reaper = engine_reaper.start(engine_reaper.descendants(os.getpid()))
print(engine.pid, reaper.pid, flush=True)
time.sleep(300)
"""


def test_a_killed_replicas_engine_is_killed_too() -> None:
    replica = subprocess.Popen([sys.executable, "-c", REPLICA], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE)
    assert replica.stdout is not None
    engine, reaper = map(int, replica.stdout.readline().split())
    try:
        # Proving the reaper does NOT act on a live replica: a span of its polls, not a wait.
        time.sleep(2 * engine_reaper.POLL_S)
        assert running(engine), "the reaper acted while the replica was running"
        replica.kill()
        replica.wait()
        assert wait_until(lambda: not running(engine), 10 * engine_reaper.POLL_S)
        assert wait_until(lambda: not running(reaper), 10 * engine_reaper.POLL_S)
    finally:
        for pid in (engine, reaper):
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_reused_pid_is_left_alone() -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    parent = subprocess.Popen([sys.executable, "-c", "pass"])
    parent.wait()
    try:
        # Recorded with another start time: the pid now belongs to a different process.
        assert engine_reaper.watch(parent.pid, [(bystander.pid, "1")]) == []
        assert running(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_descendants_are_found_through_generations() -> None:
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "print(p.pid, flush=True); time.sleep(60)")
    outer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert outer.stdout is not None
    inner = int(outer.stdout.readline())
    try:
        assert set(engine_reaper.descendants(os.getpid())) >= {outer.pid, inner}
        assert engine_reaper.descendants(inner) == []
    finally:
        os.kill(inner, signal.SIGKILL)
        outer.kill()
        outer.wait()
