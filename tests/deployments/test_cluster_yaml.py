"""cluster.yaml: Ray's cluster launcher accepts it, and it declares the machines we mean.

Ray's own code checks it, as `ray up` does before it calls AWS: `prepare_config` merges the
AWS defaults, `validate_config` checks the result against Ray's ray-schema.json. Neither
needs AWS credentials or the network; the `offline` fixture makes sure of it.
"""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.util.accelerators.accelerators import NVIDIA_A100, NVIDIA_A100_80G, NVIDIA_L4

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
ACCELERATOR = "accelerator_type:"


def _no_network(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("cluster.yaml validation must not touch the network")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)


@pytest.fixture
def raw() -> dict[str, Any]:
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    assert isinstance(config, dict)
    return config


@pytest.fixture
def prepared(raw: dict[str, Any], offline: None) -> dict[str, Any]:
    """The config as `ray up` validates it: merged with Ray's AWS defaults."""
    return prepare_config(copy.deepcopy(raw))


def _workers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    head = config["head_node_type"]
    return {k: v for k, v in config["available_node_types"].items() if k != head}


def _commands(config: dict[str, Any], key: str) -> str:
    return "\n".join(config[key])


def test_ray_validates_the_prepared_config(prepared: dict[str, Any]) -> None:
    validate_config(prepared)


def test_ray_defaults_do_not_replace_our_commands(
    raw: dict[str, Any], prepared: dict[str, Any]
) -> None:
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert prepared[key] == raw[key]
    assert prepared["provider"] == raw["provider"]


@pytest.mark.parametrize(
    "path",
    [("max_worker",), ("available_node_types", "gpu_24gb", "max_worker")],
    ids=["top-level", "node-type"],
)
def test_a_typo_is_refused(raw: dict[str, Any], offline: None, path: tuple[str, ...]) -> None:
    config = copy.deepcopy(raw)
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = 4
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(config))


def test_provider_is_aws_us_west_2(raw: dict[str, Any]) -> None:
    provider = raw["provider"]
    assert provider["type"] == "aws"
    assert provider["region"] == "us-west-2"
    zones = provider["availability_zone"].split(",")
    assert zones and all(z.startswith("us-west-2") for z in zones)
    assert provider["cache_stopped_nodes"] is False
    assert raw["cluster_name"] == "inference"
    assert raw["auth"]["ssh_user"] == "ubuntu"


def test_head_has_cpus_and_no_gpu(prepared: dict[str, Any]) -> None:
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"]["CPU"] > 0
    assert not any(k.startswith(ACCELERATOR) for k in head["resources"])
    assert head["max_workers"] == 0


def test_gpu_node_types_declare_gpu_and_accelerator(raw: dict[str, Any]) -> None:
    workers = _workers(raw)
    assert set(workers) == {"gpu_24gb", "gpu_80gb"}
    for name, node in workers.items():
        assert node["resources"]["GPU"] >= 1, name
        assert any(k.startswith(ACCELERATOR) for k in node["resources"]), name
    # The names Ray's scheduler matches (ray.util.accelerators), not our own spelling.
    assert workers["gpu_24gb"]["resources"][ACCELERATOR + NVIDIA_L4] == 1
    assert workers["gpu_80gb"]["resources"][ACCELERATOR + NVIDIA_A100] == 1
    assert workers["gpu_80gb"]["resources"][ACCELERATOR + NVIDIA_A100_80G] == 1


def test_gpu_node_types_scale_to_zero(raw: dict[str, Any]) -> None:
    workers = _workers(raw)
    for name, node in workers.items():
        assert node["min_workers"] == 0, name
        assert node["max_workers"] >= 1, name
    assert sum(n["max_workers"] for n in workers.values()) <= raw["max_workers"]
    assert raw["idle_timeout_minutes"] == 5


def test_every_node_gets_the_project_with_the_gpu_engine(raw: dict[str, Any]) -> None:
    assert raw["file_mounts"] == {"~/inference-cluster": "."}
    setup = _commands(raw, "setup_commands")
    assert "--python 3.11" in setup
    assert "pip install -e '.[gpu]'" in setup
    # The autoscaler on the head launches instances through boto3, in the venv Ray runs from.
    assert "~/inference-cluster/.venv/bin/pip install boto3" in _commands(
        raw, "head_setup_commands"
    )


def test_ray_starts_from_the_project_venv_and_workers_join_the_head(
    raw: dict[str, Any],
) -> None:
    head = _commands(raw, "head_start_ray_commands")
    worker = _commands(raw, "worker_start_ray_commands")
    assert ".venv/bin/ray start --head --port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--dashboard-host=0.0.0.0" in head
    assert "--metrics-export-port=8080" in head
    assert ".venv/bin/ray start --address=$RAY_HEAD_IP:6379" in worker
    for commands in (head, worker):
        assert commands.startswith("~/inference-cluster/.venv/bin/ray stop")
        assert "HF_HOME=" in commands
