"""cluster.yaml: Ray's cluster launcher accepts it, and it declares the machines we mean.

Checked against the JSON schema Ray ships with its cluster launcher
(``ray/autoscaler/ray-schema.json``, what `ray up` validates a config with), read as a package
file: no AWS credentials, no network, no Ray internals.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.util.accelerators.accelerators import NVIDIA_A100, NVIDIA_A100_80G, NVIDIA_L4

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
ACCELERATOR = "accelerator_type:"


@pytest.fixture(scope="module")
def ray_schema() -> dict[str, Any]:
    schema = json.loads(resources.files("ray.autoscaler").joinpath("ray-schema.json")
                        .read_text())
    assert isinstance(schema, dict)
    return schema


@pytest.fixture
def raw() -> dict[str, Any]:
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    assert isinstance(config, dict)
    return config


def _workers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    head = config["head_node_type"]
    return {k: v for k, v in config["available_node_types"].items() if k != head}


def _commands(config: dict[str, Any], key: str) -> str:
    return "\n".join(config[key])


def test_rays_schema_accepts_the_config(raw: dict[str, Any],
                                        ray_schema: dict[str, Any]) -> None:
    jsonschema.validate(raw, ray_schema)


@pytest.mark.parametrize(
    "path",
    [("max_worker",), ("available_node_types", "gpu_24gb", "max_worker")],
    ids=["top-level", "node-type"],
)
def test_a_typo_is_refused(raw: dict[str, Any], ray_schema: dict[str, Any],
                           path: tuple[str, ...]) -> None:
    config = copy.deepcopy(raw)
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = 4
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate(config, ray_schema)


def test_provider_is_aws_us_west_2(raw: dict[str, Any]) -> None:
    provider = raw["provider"]
    assert provider["type"] == "aws"
    assert provider["region"] == "us-west-2"
    zones = provider["availability_zone"].split(",")
    assert zones and all(z.startswith("us-west-2") for z in zones)
    assert provider["cache_stopped_nodes"] is False
    assert raw["cluster_name"] == "inference"
    assert raw["auth"]["ssh_user"] == "ubuntu"


def test_head_has_cpus_and_no_gpu(raw: dict[str, Any]) -> None:
    head = raw["available_node_types"][raw["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"]["CPU"] > 0
    assert not any(k.startswith(ACCELERATOR) for k in head["resources"])
    assert head.get("max_workers", 0) == 0  # the head is never scaled


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
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard` (SSH)
    assert "--metrics-export-port=8080" in head
    assert ".venv/bin/ray start --address=$RAY_HEAD_IP:6379" in worker
    for commands in (head, worker):
        assert commands.startswith("~/inference-cluster/.venv/bin/ray stop")
        assert "HF_HOME=" in commands


def test_clients_reach_only_the_api_port(raw: dict[str, Any]) -> None:
    """Ray adds SSH and all traffic between the cluster's own nodes; the only rule for
    anyone else is the API port (Serve's proxy), from a given network, not the world."""
    [rule] = raw["provider"]["security_group"]["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (8000, 8000, "tcp")
    assert [r["CidrIp"] for r in rule["IpRanges"]] != ["0.0.0.0/0"]
