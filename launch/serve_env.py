"""How Ray Serve itself runs: the process settings in ``config/serve.env``.

Ray reads them from the environment when its processes start, so they must be exported
before the cluster starts. The Makefile and cluster.yaml source the file from the shell; the
tests and the benchmark start Serve from Python and take them from :func:`serve_env`.
"""

from __future__ import annotations

from pathlib import Path

SERVE_ENV = Path(__file__).resolve().parents[1] / "config" / "serve.env"


def serve_env(path: Path = SERVE_ENV) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments are skipped."""
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        env[key.strip()] = value.strip()
    return env
