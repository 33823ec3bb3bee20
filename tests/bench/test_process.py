"""The benchmark stops what it starts with SIGINT, as Ctrl-C would: that must work however
the benchmark itself was started, including in the background of a script, which hands its
programs SIGINT ignored."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from bench.run import ROOT, sigint_as_in_a_terminal

# Started with SIGINT ignored (as `cmd &` in a script starts it), the benchmark's process()
# starts a child that waits for SIGINT and stops it with SIGINT.
IGNORED_THEN_STOPPED = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)
from bench.run import process
log = Path(sys.argv[1])
started = time.monotonic()
with process([sys.executable, "-c", "import time; time.sleep(300)"], log):
    pass
print(round(time.monotonic() - started))
"""


def test_a_child_stops_on_sigint_even_when_the_benchmark_ignores_it(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", IGNORED_THEN_STOPPED, str(tmp_path / "log")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    # process() waits 60 s before it falls back to SIGKILL: the SIGINT did it.
    assert int(out.stdout.strip()) < 30, out.stdout


def test_a_sigint_handler_of_its_own_is_left_alone() -> None:
    def own(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGINT, own)
    try:
        sigint_as_in_a_terminal()
        assert signal.getsignal(signal.SIGINT) is own
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_ignored_sigint_gets_its_default_action_back() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sigint_as_in_a_terminal()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
