"""How Ray Serve itself runs: the process settings in ``config/serve.env``.

Ray reads them from the environment when its processes start, so they must be exported
before the cluster starts. The Makefile and cluster.yaml source the file from the shell; the
tests and the benchmark start Serve from Python and take them from :func:`serve_env`.
"""

from __future__ import annotations

import socket
from pathlib import Path

SERVE_ENV = Path(__file__).resolve().parents[1] / "config" / "serve.env"

# Fixed ports Serve opens in this mode besides the HTTP port: HAProxy's stats page and
# Prometheus exporter, and the fallback proxy HAProxy keeps as a backup server.
_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
          "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")


def read(path: Path = SERVE_ENV) -> dict[str, str]:
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(private_ports: bool = False) -> dict[str, str]:
    """The settings to export before starting Ray. ``private_ports``: free ports instead of
    the fixed ones, so a second instance (a test session, a benchmark) runs beside
    ``make serve`` on the same machine."""
    env = read()
    if private_ports:
        env.update({name: str(_free_port()) for name in _PORTS})
    return env
