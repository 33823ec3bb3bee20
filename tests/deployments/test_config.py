"""The shipped Serve configs: Serve's own schema and our model settings both accept them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from deployments.app import deployment_name
from deployments.config import AppConfig, app_args_from_serve_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_a_valid_serve_config(path: Path) -> None:
    ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_args_are_valid_model_settings(path: Path) -> None:
    AppConfig.model_validate(app_args_from_serve_config(path))


def laptop_args() -> dict[str, Any]:
    return app_args_from_serve_config(ROOT / "config" / "laptop.yaml")


def test_laptop_serves_the_builtin_models() -> None:
    config = AppConfig.model_validate(laptop_args())
    assert {m.id: m.task for m in config.models} == {
        "huggingfacetb/smollm2-135m-instruct:fp32": "chat",
        "sentence-transformers/all-minilm-l6-v2:fp32": "embedding",
        "openai/whisper-tiny.en:int8": "transcription",
    }
    total_cpus = config.ingress.deployment.num_cpus + sum(
        m.deployment.num_cpus * (m.deployment.num_replicas or 1) for m in config.models
        if m.embedding is None or m.embedding.placement == "replica"  # else: in the ingress
    )
    assert total_cpus <= 2, "the laptop default must fit a 2-core machine"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda a: a["models"][0]["chat"].update(max_model_lenght=10),  # typo
        lambda a: a["models"][0].update(embedding={}),  # wrong engine for the task
        lambda a: a["models"].append(dict(a["models"][0])),  # duplicate id
        lambda a: a["models"][0].update(id="bad id with spaces"),
        lambda a: a["models"][1]["deployment"].update(num_cpus=0),
        lambda a: a.update(extra_section=True),
        # coalesced calls would hide load from the autoscaler, or leave replicas idle
        lambda a: a["models"][1].update(
            embedding={"ingress_calls_in_flight": 2},
            deployment={"autoscaling": {"min_replicas": 1, "max_replicas": 2}}),
        lambda a: a["models"][1].update(
            embedding={"ingress_calls_in_flight": 1}, deployment={"num_replicas": 2}),
        # Serve's autoscaler would not see the requests the ingress's own front takes
        lambda a: a["ingress"]["deployment"].update(
            autoscaling={"min_replicas": 1, "max_replicas": 2}),
        lambda a: a["ingress"]["http_front"].update(port=0),
        lambda a: a["ingress"]["http_front"].update(hostname="localhost"),  # typo
    ],
)
def test_bad_settings_are_refused(mutate: Any) -> None:
    args = laptop_args()
    mutate(args)
    with pytest.raises(ValidationError):
        AppConfig.model_validate(args)


def test_the_laptop_api_is_the_ingress_s_own_front_on_loopback() -> None:
    # One process on a request's path (docs/performance.md); no Serve proxy beside it.
    front = AppConfig.model_validate(laptop_args()).ingress.http_front
    assert front is not None and (front.host, front.port) == ("127.0.0.1", 8000)
    assert yaml.safe_load((ROOT / "config" / "laptop.yaml").read_text())[
        "proxy_location"] == "Disabled"


def test_deployment_names_are_serve_safe_and_distinct() -> None:
    names = {deployment_name(m["id"]) for m in laptop_args()["models"]}
    assert len(names) == len(laptop_args()["models"])
    assert all("/" not in n and ":" not in n for n in names)


def test_grafana_dashboard_plots_every_exported_metric() -> None:
    import json

    from ray.util.metrics import Metric

    from app import metrics
    from deployments import metrics as replica_metrics

    dashboard = json.loads((ROOT / "config" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    names = [m.info["name"] for module in (metrics, replica_metrics)
             for m in vars(module).values() if isinstance(m, Metric)]
    assert len(names) == 8
    for name in names:
        assert f"ray_{name}" in exprs, name


def rerank_model(**fields: Any) -> dict[str, Any]:
    return {"id": "org/reranker:fp32", "task": "rerank", "source": "/models/reranker", **fields}


def test_a_rerank_model_gets_its_settings_and_card_from_the_config() -> None:
    from deployments.app import _config_card

    args = laptop_args()
    args["models"].append(rerank_model(rerank={"max_batch_size": 8, "truncate": True,
                                               "max_seq_length": 512}))
    spec = AppConfig.model_validate(args).models[-1]
    assert spec.rerank is not None and spec.rerank.max_batch_size == 8 and spec.rerank.truncate
    card = _config_card(spec, 1)
    assert card is not None and (card.task, card.context_length) == ("rerank", 512)
    assert card.routes == ["/v1/rerank", "/v2/rerank"]
    bare = AppConfig.model_validate({"models": [rerank_model()]}).models[0]
    assert bare.rerank is not None and not bare.rerank.truncate  # refuse over-long by default


@pytest.mark.parametrize("model", [
    rerank_model(rerank={"max_batch_sise": 8}),  # typo
    rerank_model(rerank={"max_batch_size": 0}),
    rerank_model(embedding={}),  # wrong engine for the task
    rerank_model(chat={}),
    {"id": "e", "task": "embedding", "source": "x", "rerank": {}},
    {"id": "c", "task": "chat", "source": "x", "rerank": {}},
    # a model that can scale to zero must be described by the config
    rerank_model(deployment={"autoscaling": {"min_replicas": 0, "max_replicas": 1}}),
    rerank_model(deployment={"request_router": "prefix_cache_affinity"}),
])
def test_bad_rerank_settings_are_refused(model: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AppConfig.model_validate({"models": [model]})


LIFECYCLE_CONFIG = ROOT / "tests" / "e2e" / "configs" / "lifecycle.yaml"


def lifecycle_args() -> dict[str, Any]:
    return app_args_from_serve_config(LIFECYCLE_CONFIG)


def test_the_lifecycle_test_config_is_valid_and_runs_no_retired_model() -> None:
    ServeDeploySchema.model_validate(yaml.safe_load(LIFECYCLE_CONFIG.read_text()))
    config = AppConfig.model_validate(lifecycle_args())
    assert [m.id for m in config.served()] == ["test/minilm:current", "test/minilm:deprecated"]


def _model(args: dict[str, Any], model_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in args["models"] if m["id"] == model_id)
    return found


@pytest.mark.parametrize(
    "mutate",
    [
        # an end-of-life model needs a replacement, which exists, runs and does the same task
        lambda a: _model(a, "test/minilm:retired").pop("replacement"),
        lambda a: _model(a, "test/minilm:retired").update(replacement="test/nothing"),
        lambda a: _model(a, "test/minilm:retired").update(replacement="test/minilm:retired"),
        lambda a: a["models"].append({"id": "speech", "task": "transcription",
                                      "source": "builtin:whisper-tiny-en",
                                      "replacement": "test/minilm:current"}),
        lambda a: _model(a, "test/minilm:current").update(
            status="eol", deprecated_at="2026-01-01", eol_at="2026-02-01",
            replacement="test/minilm:retired"),  # a circle of retired models
        # the dates the headers need, in order, only on a model being retired
        lambda a: _model(a, "test/minilm:deprecated").pop("eol_at"),
        lambda a: _model(a, "test/minilm:deprecated").update(eol_at="2026-01-01"),
        lambda a: _model(a, "test/minilm:current").update(eol_at="2027-01-01"),
        lambda a: _model(a, "test/minilm:current").update(status="retired"),
        # names are unique across ids and aliases, and are model ids
        lambda a: _model(a, "test/minilm:deprecated").update(aliases=["test/minilm:latest"]),
        lambda a: _model(a, "test/minilm:deprecated").update(aliases=["test/minilm:current"]),
        lambda a: _model(a, "test/minilm:current").update(aliases=["has space"]),
    ],
)
def test_bad_lifecycles_are_refused(mutate: Any) -> None:
    args = lifecycle_args()
    mutate(args)
    with pytest.raises(ValidationError):
        AppConfig.model_validate(args)


def test_the_ingress_learns_every_name_and_lifecycle_from_the_config() -> None:
    from deployments.app import model_catalog

    catalog = model_catalog(AppConfig.model_validate(lifecycle_args()), built=1)
    assert catalog.resolve("test/minilm:latest").model == "test/minilm:current"
    retired = catalog.resolve("test/minilm:retired")
    assert retired.model == "test/minilm:current"
    assert retired.notice["Sunset"] == "Tue, 01 Sep 2026 00:00:00 GMT"
    assert catalog.resolve("test/minilm:deprecated").model == "test/minilm:deprecated"
    card = catalog.retired_card("test/minilm:retired")
    assert card is not None and (card.status, card.task) == ("eol", "embedding")


def embedding_model(**fields: Any) -> dict[str, Any]:
    return {"id": "org/embed:fp32", "task": "embedding", "source": "/models/embed", **fields}


@pytest.mark.parametrize("model", [
    embedding_model(embedding={"placement": "ingress", "device": "cuda"}),
    embedding_model(embedding={"placement": "ingress"}, deployment={"num_gpus": 1}),
    embedding_model(embedding={"placement": "ingress"},
                    deployment={"autoscaling": {"min_replicas": 1, "max_replicas": 2}}),
    embedding_model(embedding={"placement": "ingress"}, deployment={"num_replicas": 2}),
    embedding_model(embedding={"placement": "ingress", "ingress_calls_in_flight": 2}),
    embedding_model(embedding={"placement": "inside"}),  # typo
])
def test_what_only_a_models_own_replicas_have_is_refused_in_the_ingress(
        model: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AppConfig.model_validate({"models": [model]})


def test_a_model_in_the_ingress_has_no_deployment_and_its_route_carries_its_spec() -> None:
    from deployments.app import model_route

    config = AppConfig.model_validate({"models": [
        embedding_model(embedding={"placement": "ingress"},
                        deployment={"max_ongoing_requests": 8, "max_queued_requests": 24}),
        embedding_model(id="org/other:fp32")]})
    default, = (m for m in config.models if m.id == "org/other:fp32")
    assert default.embedding is not None and default.embedding.placement == "replica"
    local = model_route(config.models[0], None, 1)
    assert local.in_ingress_spec == config.models[0].model_dump()
    assert local.max_requests == 8 + 24
    assert model_route(default, object(), 1).in_ingress_spec is None
