"""`make serve`, the README's first command, as a user runs it: it starts the whole service,
prints where it listens and a key, the key works through the official client, and Ctrl-C
stops it. Its own Ray, on a copy of the laptop config with a free port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import openai
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHAT_MODEL = "huggingfacetb/smollm2-135m-instruct:fp32"
EMBED_MODEL = "sentence-transformers/all-minilm-l6-v2:fp32"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@pytest.mark.slow
def test_make_serve_prints_where_it_listens_and_a_key_that_works(tmp_path: Path) -> None:
    port = free_port()
    config = yaml.safe_load((ROOT / "config" / "laptop.yaml").read_text())
    config["http_options"]["port"] = port
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "INFERENCE_STATE_DIR": str(tmp_path / "state")}
    env.pop("RAY_ADDRESS", None)
    serve = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"SERVE_CONFIG={tmp_path / 'serve.yaml'}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own process group, as a terminal gives it
    output: list[str] = []
    assert serve.stdout is not None
    stdout = serve.stdout
    reader = threading.Thread(target=lambda: output.extend(stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 600
        found = None
        while found is None:
            assert serve.poll() is None, "make serve exited:\n" + "".join(output)
            assert time.monotonic() < deadline, "no key printed:\n" + "".join(output)
            found = re.search(r"API key:\s+(\S+)", "".join(output))
            time.sleep(0.5)
        assert f"Base URL: http://127.0.0.1:{port}/v1" in "".join(output)

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1",
                               api_key=found.group(1), max_retries=0, timeout=60)
        # Until the app is up: no connection, then Serve's 404 while the app deploys.
        while True:
            assert serve.poll() is None, "make serve exited:\n" + "".join(output)
            assert time.monotonic() < deadline, "never served:\n" + "".join(output)
            try:
                models = client.models.list()
                break
            except (openai.APIConnectionError, openai.NotFoundError):
                time.sleep(1)
        assert {m.id for m in models} == {CHAT_MODEL, EMBED_MODEL}
        reply = client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=4)
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        embedding = client.embeddings.create(model=EMBED_MODEL, input="hello")
        assert len(embedding.data[0].embedding) == 384
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-not-a-key",
                          max_retries=0).models.list()

        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C in the terminal
        serve.wait(timeout=120)
        deadline = time.monotonic() + 60
        while listening(port) and time.monotonic() < deadline:
            time.sleep(1)
        assert not listening(port), "still listening after Ctrl-C"
        deadline = time.monotonic() + 60
        while session(serve.pid) and time.monotonic() < deadline:
            time.sleep(1)
        assert not session(serve.pid), "processes left after Ctrl-C"
    finally:
        for pid in session(serve.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if serve.poll() is None:
            serve.wait()
