"""Ends a chat replica's engine processes when the replica ends without stopping them.

vLLM runs its engine in child processes of the replica (the engine core, which starts the
workers). A replica that stops normally stops them; a replica that is killed (Ray's memory
monitor, ``ray stop --force``, a crashed worker process) leaves them running, reparented and
holding the model, the KV cache and, on GPUs, the device memory its replacement needs. The
replica starts this small process beside them (:func:`start`): it waits for the replica to
end, then kills those of the recorded processes that still run.

Processes are recorded with their start time, so a pid the system has since given to another
process is left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 1.0


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which is in parentheses and may hold spaces):
    field 4 of proc(5), the parent pid, is index 1; field 22, the start time, is index 19."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def running(pid: int) -> bool:
    """Alive: not ended, and not a zombie whose parent has yet to collect it."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def start_time(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[19] if fields else None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (none found where there is no /proc: not Linux)."""
    children: dict[int, list[int]] = {}
    if not Path("/proc").is_dir():
        return []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def start(pids: list[int]) -> subprocess.Popen[bytes] | None:
    """Watch the calling process; when it ends, kill ``pids`` (those still running)."""
    recorded = [f"{pid}:{started}" for pid in pids if (started := start_time(pid))]
    if not recorded:
        return None
    # Run by path: a Ray worker's children do not necessarily find this package by name.
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(os.getpid()),
                             *recorded], stdin=subprocess.DEVNULL)


def watch(parent: int, processes: list[tuple[int, str]]) -> list[int]:
    """Wait until ``parent`` ends, then kill ``processes``; the pids killed."""
    # Ctrl-C in a terminal reaches every process of the session: the replica decides
    # whether to stop its engine; this process only acts once the replica is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.getppid() == parent:
        time.sleep(POLL_S)
    killed = []
    for pid, started in processes:
        if running(pid) and start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                continue
    return killed


def main(argv: list[str]) -> int:
    parent, recorded = int(argv[0]), argv[1:]
    processes = [(int(pid), started) for pid, started in (r.split(":") for r in recorded)]
    killed = watch(parent, processes)
    if killed:
        print(f"engine_reaper: the replica (pid {parent}) ended without stopping its engine; "
              f"killed {', '.join(map(str, killed))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
