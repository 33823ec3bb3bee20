"""Replicas, GPUs, autoscaling and routing settings: what the config accepts, what it refuses,
and the Serve options it turns into."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from deployments.app import model_route, with_router
from deployments.config import AppConfig, ModelSpec, app_args_from_serve_config
from deployments.replicas import PREFIX_CACHE_ROUTER
from deployments.vllm_engine import engine_cli_args
from messages import ChatRequestBody, ModelCard

ROOT = Path(__file__).resolve().parents[2]


def chat(**deployment: Any) -> dict[str, Any]:
    return {"id": "org/chat:bf16", "task": "chat", "source": "org/chat",
            "deployment": deployment}


def embedding(**deployment: Any) -> dict[str, Any]:
    return {"id": "org/embed:fp32", "task": "embedding", "source": "org/embed",
            "deployment": deployment}


def test_autoscaling_replaces_a_fixed_replica_count() -> None:
    spec = ModelSpec.model_validate(chat(autoscaling={
        "min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 8,
        "upscale_delay_s": 5, "downscale_delay_s": 60}))
    options = spec.serve_options()
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 8.0,
        "upscale_delay_s": 5.0, "downscale_delay_s": 60.0, "metrics_interval_s": 10.0,
        "look_back_period_s": 30.0}
    fixed = ModelSpec.model_validate(chat(num_replicas=3)).serve_options()
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed


@pytest.mark.parametrize("deployment, message", [
    ({"num_replicas": 2, "autoscaling": {"max_replicas": 4}}, "either num_replicas or"),
    ({"autoscaling": {"min_replicas": 5, "max_replicas": 4}}, "exceeds max_replicas"),
    ({"autoscaling": {"min_replicas": 1, "max_replicas": 4, "initial_replicas": 9}},
     "initial_replicas"),
    ({"max_ongoing_requests": 4, "autoscaling": {"max_replicas": 2,
                                                 "target_ongoing_requests": 8}},
     "target_ongoing_requests exceeds"),
    ({"autoscaling": {"max_replicas": 2, "min_replica": 0}}, "min_replica"),
    ({"autoscaling": {"max_replicas": 0}}, "max_replicas"),
    ({"wait_for_replica_s": 0}, "wait_for_replica_s"),
    ({"request_router": "round_robin"}, "request_router"),
])
def test_bad_scaling_settings_are_refused(deployment: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelSpec.model_validate(chat(**deployment))


def test_gpus_and_accelerator_type_reach_the_replica() -> None:
    options = ModelSpec.model_validate(
        chat(num_cpus=2, num_gpus=1, accelerator_type="L4")).serve_options()
    assert options["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1,
                                            "accelerator_type": "L4"}
    assert "placement_group_bundles" not in options


def test_tensor_parallel_replica_gets_one_bundle_per_gpu_on_one_node() -> None:
    raw = chat(num_cpus=4, num_gpus=4, accelerator_type="A100-80G")
    raw["chat"] = {"tensor_parallel_size": 4}
    spec = ModelSpec.model_validate(raw)
    options = spec.serve_options()
    tag = {"accelerator_type:A100-80G": 0.001}
    assert options["placement_group_bundles"] == [
        {"CPU": 4, "GPU": 1.0, **tag}, {"GPU": 1.0, **tag}, {"GPU": 1.0, **tag},
        {"GPU": 1.0, **tag}]
    assert options["placement_group_strategy"] == "STRICT_PACK"
    # The replica holds CPU only; vLLM's workers take the GPUs of the bundles.
    assert options["ray_actor_options"] == {"num_cpus": 4}
    assert spec.chat is not None
    args = engine_cli_args("/m", spec.id, spec.chat)
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--distributed-executor-backend") + 1] == "ray"
    single = ModelSpec.model_validate(chat(num_gpus=1))
    assert single.chat is not None
    assert "--distributed-executor-backend" not in engine_cli_args("/m", single.id, single.chat)


def test_tensor_parallel_needs_as_many_gpus() -> None:
    raw = chat(num_gpus=1)
    raw["chat"] = {"tensor_parallel_size": 2}
    with pytest.raises(ValidationError, match="num_gpus must be 2"):
        ModelSpec.model_validate(raw)


def test_prefix_cache_routing_is_for_chat_models_only() -> None:
    options = ModelSpec.model_validate(
        chat(request_router="prefix_cache_affinity")).serve_options()
    assert options["request_router_config"] == {"request_router_class": PREFIX_CACHE_ROUTER}
    assert "request_router_config" not in ModelSpec.model_validate(chat()).serve_options()
    with pytest.raises(ValidationError, match="for chat models"):
        ModelSpec.model_validate(embedding(request_router="prefix_cache_affinity"))
    with pytest.raises(ValidationError, match="not the ingress"):
        AppConfig.model_validate({"models": [chat()], "ingress": {
            "deployment": {"request_router": "prefix_cache_affinity"}}})


def test_chat_is_routed_by_prefix_and_the_ingress_scales() -> None:
    config = AppConfig.model_validate({
        "ingress": {"deployment": {"autoscaling": {"min_replicas": 1, "max_replicas": 3}}},
        "models": [chat(request_router="prefix_cache_affinity", wait_for_replica_s=5)],
    })
    ingress = config.ingress.deployment.serve_options()
    assert ingress["autoscaling_config"]["max_replicas"] == 3
    [spec] = config.models
    route = model_route(spec, "handle", built=1)
    assert route.task == "chat" and route.handle == "handle"
    assert route.wait_for_replica_s == 5 and route.scales_to_zero is False
    assert route.card is not None and route.card.context_length == 2048
    router = with_router(spec.serve_options())["request_router_config"]
    assert router.request_router_class == PREFIX_CACHE_ROUTER


def test_a_chat_request_shows_its_messages_to_the_prefix_router() -> None:
    """Serve's PrefixCacheAffinityRouter reads the prompt from a ``messages`` attribute of
    the request as it crosses the handle; the body stays the plain dict vLLM validates."""
    from ray import cloudpickle

    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    body = ChatRequestBody({"model": "m", "messages": messages})
    crossed = cloudpickle.loads(cloudpickle.dumps(body))  # as Serve sends it to a replica
    assert isinstance(crossed, ChatRequestBody)
    assert crossed.messages == messages
    assert dict(crossed) == {"model": "m", "messages": messages}


def test_gpu_cluster_config_asks_for_gpus_and_scales_every_model() -> None:
    config = AppConfig.model_validate(
        app_args_from_serve_config(ROOT / "config" / "gpu-cluster.yaml"))
    assert config.ingress.deployment.autoscaling is not None
    for spec in config.models:
        assert spec.deployment.num_gpus > 0, spec.id
        assert spec.deployment.accelerator_type, spec.id
        assert spec.deployment.autoscaling is not None, spec.id
        assert not spec.source.startswith("builtin:"), spec.id
        if spec.chat:
            assert spec.deployment.num_gpus == spec.chat.tensor_parallel_size
    big = [s for s in config.models if s.chat and s.chat.tensor_parallel_size > 1]
    assert big and all(s.serve_options()["placement_group_bundles"] for s in big)
    assert any(s.deployment.autoscaling and s.deployment.autoscaling.min_replicas == 0
               and s.deployment.wait_for_replica_s for s in config.models)


def test_a_model_spec_survives_the_trip_to_its_replica() -> None:
    """The replica re-validates the spec it is given (``spec.model_dump()``)."""
    for raw in (chat(autoscaling={"min_replicas": 0, "max_replicas": 2}), chat(num_replicas=2),
                chat()):
        spec = ModelSpec.model_validate(raw)
        again = ModelSpec.model_validate(spec.model_dump())
        assert again == spec
        assert again.serve_options() == spec.serve_options()


async def test_a_chat_replica_whose_engine_never_started_shuts_down_cleanly() -> None:
    """Serve calls ``__del__`` on a replica whose constructor failed, too."""
    from deployments.chat import ChatDeployment

    cls = ChatDeployment.func_or_class  # type: ignore[attr-defined]
    replica = object.__new__(cls)
    await replica.__del__()


def test_an_embedding_model_that_scales_to_zero_states_its_card() -> None:
    zero = embedding(autoscaling={"min_replicas": 0, "max_replicas": 1})
    with pytest.raises(ValidationError, match="embedding.dimensions and"):
        ModelSpec.model_validate(zero)
    zero["embedding"] = {"dimensions": 384, "max_seq_length": 256}
    route = model_route(ModelSpec.model_validate(zero), "handle", built=7)
    assert route.scales_to_zero is True
    assert route.card == ModelCard(id="org/embed:fp32", created=7, owned_by="organization",
                                   task="embedding", context_length=256, dimensions=384)
