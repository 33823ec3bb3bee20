"""`make serve`, the README's first command, as a user runs it: it starts the whole service,
prints where it listens and a key, the key works through the official client, and Ctrl-C
(or SIGTERM to its process group) stops it; a hard stop of everything it started leaves no
vLLM engine behind. Its own Ray, on a copy of the
laptop config with a free port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from bench.run import free_port, laptop_config_on, sigint_as_in_a_terminal
from deployments.app import deployment_name
from launch.engine_reaper import descendants, running
from launch.loopback import ray_token_path
from tests.support.e2e import (
    CHAT_MODEL,
    EMBED_MODEL,
    RECORDINGS,
    SPEECH_MODEL,
    command_name,
)
from tests.support.sockets import (
    SERVE_REPLICA_TITLE,
    listeners,
    refuses_calls_without_ray_token,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # `make serve` itself: its own Ray and the built-in models

ROOT = Path(__file__).resolve().parents[2]


def session(sid: int) -> list[int]:
    """The processes of a terminal session: Ray gives some of its own a process group of
    their own, so a process group is not enough to find them all."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == sid:
                found.append(int(entry.name))
        except OSError:  # ended meanwhile
            continue
    return found


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Served:
    process: subprocess.Popen[str]
    output: list[str]
    port: int
    key: str

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1",
                             api_key=key or self.key, max_retries=0, timeout=60)


@contextlib.contextmanager
def make_serve(tmp_path: Path) -> Iterator[Served]:
    """`make serve` in a terminal session of its own, until its key works for /v1/models;
    every process of that session is killed afterwards, whatever happened."""
    port = free_port()
    config = laptop_config_on(port, tmp_path / "serve.yaml")
    env = {**os.environ, "INFERENCE_STATE_DIR": str(tmp_path / "state")}
    env.pop("RAY_ADDRESS", None)
    sigint_as_in_a_terminal()  # however this test run itself was started
    process = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"SERVE_CONFIG={config}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own session and process group, as a terminal gives it
    output: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: output.extend(stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 600
        found = None
        while found is None:
            assert process.poll() is None, "make serve exited:\n" + "".join(output)
            assert time.monotonic() < deadline, "no key printed:\n" + "".join(output)
            found = re.search(r"API key:\s+(\S+)", "".join(output))
            time.sleep(0.5)
        assert f"Base URL: http://127.0.0.1:{port}/v1" in "".join(output)
        served = Served(process, output, port, found.group(1))
        # Until the app is up: no connection, then Serve's 404 while the app deploys.
        while True:
            assert process.poll() is None, "make serve exited:\n" + "".join(output)
            assert time.monotonic() < deadline, "never served:\n" + "".join(output)
            try:
                models = served.client().models.list()
                break
            except (openai.APIConnectionError, openai.NotFoundError):
                time.sleep(1)
        assert {m.id for m in models} == {CHAT_MODEL, EMBED_MODEL, SPEECH_MODEL}
        yield served
    finally:
        for pid in session(process.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait()


def test_make_serve_prints_where_it_listens_and_a_key_that_works(tmp_path: Path) -> None:
    with make_serve(tmp_path) as served:
        client = served.client()
        reply = client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=4)
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        embedding = client.embeddings.create(model=EMBED_MODEL, input="hello")
        assert len(embedding.data[0].embedding) == 384
        heard = client.audio.transcriptions.create(model=SPEECH_MODEL,
                                                   file=RECORDINGS / "weather.wav")
        assert "sunny" in heard.text
        with pytest.raises(openai.AuthenticationError):
            served.client("sk-not-a-key").models.list()
        # Nothing it started listens beyond loopback; Ray's token and the store are owner-only.
        # (Serve's replica port is the exception, refused without Ray's token.)
        pids = {*session(served.process.pid), *descendants(served.process.pid)}
        found = listeners(sorted(pids))
        names = {command_name(x.pid).split(":")[0].rsplit("/", 1)[-1] for x in found}
        assert {"gcs_server", "raylet"} <= names, names  # Ray's own daemons are among them
        exposed = [x for x in found if not x.loopback]
        beyond = [(command_name(x.pid), str(x.address), x.port) for x in exposed
                  if not command_name(x.pid).startswith(SERVE_REPLICA_TITLE)]
        assert not beyond, beyond
        assert all(refuses_calls_without_ray_token(x.port) for x in exposed), exposed
        assert stat.S_IMODE(ray_token_path().stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700

        os.killpg(served.process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        stopped_everything(served, "Ctrl-C")


def stopped_everything(served: Served, how: str) -> None:
    served.process.wait(timeout=120)
    assert wait_until(lambda: not listening(served.port), 60, interval=1), f"listening after {how}"
    assert wait_until(lambda: not session(served.process.pid), 60, interval=1), \
        f"processes left after {how}: {[command_name(p) for p in session(served.process.pid)]}"


def test_sigterm_to_its_process_group_stops_everything(tmp_path: Path) -> None:
    """How a script that started `make serve &` stops it (SIGINT is ignored there)."""
    with make_serve(tmp_path) as served:
        os.killpg(served.process.pid, signal.SIGTERM)
        stopped_everything(served, "SIGTERM")


def test_a_hard_stop_of_ray_leaves_no_engine_running(tmp_path: Path) -> None:
    """What `ray stop --force` does (or a crash of Ray's own processes), on this session
    only: every process is killed at once, so Ray cleans nothing up. The chat replica's vLLM
    engine runs in processes of its own, which Ray does not know; they must end too."""
    with make_serve(tmp_path) as served:
        [replica] = [pid for pid in session(served.process.pid)
                     if command_name(pid).startswith(f"ray::ServeReplica:inference:"
                                              f"{deployment_name(CHAT_MODEL)}")]
        engine = descendants(replica)  # the engine core, its worker, the watcher
        assert len(engine) >= 3, engine
        for pid in session(served.process.pid):
            if pid not in engine:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not [pid for pid in engine if running(pid)], 30, interval=1), \
            [command_name(pid) for pid in engine if running(pid)]
