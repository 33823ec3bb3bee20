"""The application builder Serve imports (``import_path: deployments.app:build_app``).

Serve passes the application's ``args`` from the config file; they are validated by
:class:`deployments.config.AppConfig` (unknown keys refused) before anything starts.
"""

from __future__ import annotations

import time
from typing import Any

from ray.serve import Application, Deployment

from app.ingress import Ingress
from app.model_catalog import Lifecycle, ModelCatalog
from control.deployment import ControlPlane
from control.store import state_dir
from deployments.chat import ChatDeployment
from deployments.config import AppConfig, ModelSpec
from deployments.embeddings import EmbeddingDeployment
from deployments.rerank import RerankDeployment
from deployments.transcription import TranscriptionDeployment
from messages import ModelCard, ModelRoute

# @serve.deployment turns the classes into Deployments; mypy sees the classes.
DEPLOYMENTS: dict[str, Any] = {"chat": ChatDeployment, "embedding": EmbeddingDeployment,
                               "rerank": RerankDeployment,
                               "transcription": TranscriptionDeployment}


def deployment_name(model_id: str) -> str:
    """A Serve deployment name for a model id ('/' and ':' are not allowed there)."""
    return "model-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in model_id)


def build_app(args: dict[str, Any]) -> Application:
    config = AppConfig.model_validate(args)
    routes: dict[str, ModelRoute] = {}
    built = int(time.time())
    for spec in config.served():
        if spec.embedding is not None and spec.embedding.placement == "ingress":
            # No deployment: each ingress replica loads the model (app/in_ingress.py).
            routes[spec.id] = model_route(spec, None, built)
            continue
        deployment: Deployment = DEPLOYMENTS[spec.task]
        bound = deployment.options(
            name=deployment_name(spec.id), **with_router(spec.serve_options())
        ).bind(spec.model_dump())
        routes[spec.id] = model_route(spec, bound, built)
    # Resolved here, where the service is started: replicas may run elsewhere. The control
    # plane owns the SQLite store, so it stays on the head node, whose disk holds the state
    # directory (on a laptop the only node is the head).
    control_plane = ControlPlane.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": 0, "resources": {HEAD_NODE_RESOURCE: 0.001}}
    ).bind(str(state_dir()))
    ingress: Deployment = Ingress  # type: ignore[assignment]
    return ingress.options(**config.ingress.deployment.serve_options()).bind(
        routes, control_plane, config.ingress.limits(), model_catalog(config, built),
        config.ingress.http_front.model_dump() if config.ingress.http_front else None,
    )


def model_catalog(config: AppConfig, built: int) -> ModelCatalog:
    """Every model's lifecycle and aliases, and the cards of the end-of-life models (which run
    no replica to describe them)."""
    lifecycles = {
        spec.id: Lifecycle(status=spec.status, deprecated_at=spec.deprecated_at,
                           eol_at=spec.eol_at, replacement=spec.replacement,
                           aliases=tuple(spec.aliases))
        for spec in config.models
    }
    retired = [ModelCard(id=spec.id, created=built, owned_by=spec.owned_by, task=spec.task)
               for spec in config.models if spec.status == "eol"]
    return ModelCatalog(lifecycles, retired)


def model_route(spec: ModelSpec, handle: Any, built: int) -> ModelRoute:
    """What the ingress knows of a model from the config."""
    autoscaling = spec.deployment.autoscaling
    return ModelRoute(
        task=spec.task,
        handle=handle,
        wait_for_replica_s=spec.deployment.wait_for_replica_s,
        scales_to_zero=autoscaling is not None and autoscaling.min_replicas == 0,
        card=_config_card(spec, built),
        ingress_calls_in_flight=spec.embedding.ingress_calls_in_flight
        if spec.embedding else None,
        max_queued_requests=spec.deployment.max_queued_requests,
        in_ingress_spec=spec.model_dump() if handle is None else None,
        max_requests=-1 if spec.deployment.max_queued_requests < 0 else
        spec.deployment.max_ongoing_requests + spec.deployment.max_queued_requests,
    )


def _config_card(spec: ModelSpec, built: int) -> ModelCard | None:
    """The model card from the config alone, for a model that can scale to zero (the config
    requires what it needs; the replica checks it against the model it loads)."""
    if spec.chat:
        return ModelCard(id=spec.id, created=built, owned_by=spec.owned_by, task="chat",
                         context_length=spec.chat.max_model_len)
    if spec.transcription:  # every Whisper's text context
        return ModelCard(id=spec.id, created=built, owned_by=spec.owned_by,
                         task="transcription", context_length=WHISPER_TEXT_CONTEXT)
    if spec.rerank:
        if spec.rerank.max_seq_length is None:
            return None
        return ModelCard(id=spec.id, created=built, owned_by=spec.owned_by, task="rerank",
                         context_length=spec.rerank.max_seq_length)
    assert spec.embedding is not None
    if spec.embedding.dimensions is None or spec.embedding.max_seq_length is None:
        return None
    return ModelCard(id=spec.id, created=built, owned_by=spec.owned_by, task="embedding",
                     context_length=spec.embedding.max_seq_length,
                     dimensions=spec.embedding.dimensions)


WHISPER_TEXT_CONTEXT = 448
# Ray gives every cluster's head node this resource (and no other node).
HEAD_NODE_RESOURCE = "node:__internal_head__"


def with_router(options: dict[str, Any]) -> dict[str, Any]:
    """Serve options with the config's request router as the object Serve takes."""
    router = options.pop("request_router_config", None)
    if router is not None:
        from ray.serve.config import RequestRouterConfig

        options["request_router_config"] = RequestRouterConfig(**router)
    return options
