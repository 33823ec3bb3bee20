"""The slow tier: the real Serve app on the built-in models, started once per test session
from config/laptop.yaml, driven through the official `openai` client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from bench.run import free_port
from tests.support.e2e import METRICS_PORT, ROOT, SERVE_PROXY_PORT, inference_cli, make_client


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("state")
    os.environ["INFERENCE_STATE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def admin_key(state_dir: Path) -> str:
    """What `make serve` prints on first start: full access to the default project."""
    first = inference_cli("init")
    assert first["key"]["permission_sets"] == ["GenerativeApisFullAccess"]
    assert inference_cli("init")["key"] is None, "the first-start key is made only once"
    return str(first["key"]["secret_key"])


@pytest.fixture(scope="session")
def base_url(state_dir: Path) -> Iterator[str]:
    import ray
    from ray import serve

    from deployments.app import build_app
    from deployments.config import app_args_from_serve_config
    from launch import loopback
    from launch.cpu_layout import applied
    from launch.serve_env import serve_env

    laptop = ROOT / "config" / "laptop.yaml"
    args = app_args_from_serve_config(laptop)
    # The laptop config's ingress takes HTTP itself (ingress.http_front), here on a free port.
    port = free_port()
    args["ingress"]["http_front"]["port"] = port
    # Serve runs as `make serve` runs it; Ray's processes read these when they start.
    os.environ.update(serve_env())
    # As `make serve` (launch/loopback.py): Ray on 127.0.0.1 only, its token owner-only.
    loopback.apply()
    # The CPU layout `make serve` applies: Ray's processes start on the stack's cores.
    # One CPU more than the machine has: on two cores the laptop config reserves every CPU,
    # and the tests' own small apps (a tiny queue, scale from zero) deploy beside it.
    with applied(laptop):
        ray.init(include_dashboard=False, log_to_driver=False,
                 num_cpus=(os.cpu_count() or 1) + 1, _metrics_export_port=METRICS_PORT)
    try:
        # Serve's proxy too, for the apps some tests deploy beside it (serve_proxy_url).
        serve.start(http_options={"host": "127.0.0.1", "port": SERVE_PROXY_PORT})
        serve.run(build_app(args), name="inference", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def serve_proxy_url(base_url: str) -> str:
    """Serve's own proxy, where the apps that tests deploy beside the session's app (each
    under a route prefix of its own) take HTTP."""
    return f"http://127.0.0.1:{SERVE_PROXY_PORT}"


@pytest.fixture(scope="session")
def client(base_url: str, admin_key: str) -> openai.OpenAI:
    return make_client(base_url, admin_key)


@pytest.fixture
def aclient(base_url: str, admin_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=admin_key, max_retries=0,
                              timeout=120)


@pytest.fixture(scope="session")
def http(base_url: str, admin_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base_url, timeout=120, headers=headers) as c:
        yield c
