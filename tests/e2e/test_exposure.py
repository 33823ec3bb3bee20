"""What the running app exposes on this machine: every socket that Ray, Serve and the
replicas listen on is on loopback (Ray's metrics name every project), but for Serve's
replica port, which Ray's token guards; Ray's token file and the control plane's state are
their owner's only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from launch.engine_reaper import descendants
from launch.loopback import ray_token_path
from tests.support.e2e import METRICS_PORT, command_name
from tests.support.sockets import (
    SERVE_REPLICA_TITLE,
    listeners,
    refuses_calls_without_ray_token,
)

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models


def test_nothing_the_app_started_listens_beyond_loopback(base_url: str) -> None:
    # Ray's processes, Serve's and the engines' all descend from this process (the e2e
    # session starts Ray here, as `make serve` starts it in its own process).
    found = listeners([os.getpid(), *descendants(os.getpid())])
    names = {command_name(x.pid).split(":")[0].rsplit("/", 1)[-1] for x in found}
    ports = {x.port for x in found}
    # Ray's own daemons and the app's ports are among those read.
    assert {"gcs_server", "raylet"} <= names, names
    assert METRICS_PORT in ports and int(base_url.rsplit(":", 1)[1]) in ports, found
    exposed = [x for x in found if not x.loopback]
    beyond = [(command_name(x.pid), str(x.address), x.port) for x in exposed
              if not command_name(x.pid).startswith(SERVE_REPLICA_TITLE)]
    assert not beyond, beyond
    for replica_port in {x.port for x in exposed}:
        assert refuses_calls_without_ray_token(replica_port), replica_port


def test_ray_token_and_state_are_owner_only(base_url: str, state_dir: Path) -> None:
    token = ray_token_path()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
