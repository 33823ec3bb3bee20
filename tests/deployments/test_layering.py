"""The model replicas import nothing of the ingress but messages.py (docs/architecture.md,
"Rules the code keeps"): checked in a fresh interpreter, so that nothing imported by another
test hides an import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_model_replicas_import_neither_the_http_edge_nor_the_control_plane() -> None:
    probe = ("import sys, deployments.chat, deployments.embeddings, deployments.transcription; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('app', 'control')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
