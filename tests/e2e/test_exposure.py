"""What the running app exposes on this machine: every socket that Ray, Serve and the
replicas listen on is on loopback (Ray's metrics name every project), Ray's token file and
the control plane's state are their owner's only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from launch.engine_reaper import descendants
from launch.loopback import ray_token_path
from tests.support.e2e import METRICS_PORT, command_name
from tests.support.sockets import listeners


def test_nothing_the_app_started_listens_beyond_loopback(base_url: str) -> None:
    # Ray's processes, Serve's and the engines' all descend from this process (the e2e
    # session starts Ray here, as `make serve` starts it in its own process).
    found = listeners([os.getpid(), *descendants(os.getpid())])
    ports = {listener.port for listener in found}
    assert METRICS_PORT in ports and int(base_url.rsplit(":", 1)[1]) in ports, found
    exposed = [(command_name(x.pid), str(x.address), x.port) for x in found if not x.loopback]
    assert not exposed, exposed


def test_ray_token_and_state_are_owner_only(base_url: str, state_dir: Path) -> None:
    token = ray_token_path()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
