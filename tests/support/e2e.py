"""What the slow tiers share besides fixtures: the built-in models' public ids, the admin CLI
as a user runs it, clients, and the processes Ray starts (tests/e2e, test_make_serve)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai

from bench.run import free_port

ROOT = Path(__file__).resolve().parents[2]
CHAT_MODEL = "huggingfacetb/smollm2-135m-instruct:fp32"
EMBED_MODEL = "sentence-transformers/all-minilm-l6-v2:fp32"
SPEECH_MODEL = "openai/whisper-tiny.en:int8"
# Short speech recordings (tests/e2e/audio/make_recordings.py says how they were made).
RECORDINGS = ROOT / "tests" / "e2e" / "audio"
# Where the e2e session's Ray exports its metrics (tests/e2e/conftest.py starts it there).
METRICS_PORT = free_port()
# Where Serve's proxy takes HTTP for the apps tests deploy beside the session's app (whose
# ingress takes HTTP itself, as in the laptop config).
SERVE_PROXY_PORT = free_port()


def inference_cli(*args: str) -> Any:
    """Run the admin CLI as a user would, against the test session's store."""
    out = subprocess.run(
        [sys.executable, "-m", "control.cli", *args, "--json"],
        check=True, capture_output=True, text=True, env=os.environ.copy(),
    ).stdout
    return json.loads(out)


def processes(title: str) -> list[int]:
    """Pids whose command line starts with ``title`` (Ray names its processes so)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        if command_name(int(entry.name)).startswith(title):
            found.append(int(entry.name))
    return found


def command_name(pid: int) -> str:
    """The first word of a process's command line ("" once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def make_client(base_url: str, key: str, project: str | None = None) -> openai.OpenAI:
    prefix = f"/{project}" if project else ""
    return openai.OpenAI(base_url=f"{base_url}{prefix}/v1", api_key=key, max_retries=0,
                         timeout=120)
