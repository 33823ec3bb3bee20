"""The application builder Serve imports (``import_path: deployments.app:build_app``).

Serve passes the application's ``args`` from the config file; they are validated by
:class:`deployments.config.AppConfig` (unknown keys refused) before anything starts.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application, Deployment

from app.control_plane import ControlPlane
from app.ingress import Ingress
from app.store import state_dir
from deployments.chat import ChatDeployment
from deployments.config import AppConfig
from deployments.embeddings import EmbeddingDeployment


def deployment_name(model_id: str) -> str:
    """A Serve deployment name for a model id ('/' and ':' are not allowed there)."""
    return "model-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in model_id)


def build_app(args: dict[str, Any]) -> Application:
    config = AppConfig.model_validate(args)
    handles: dict[str, tuple[str, Any]] = {}
    for spec in config.models:
        # @serve.deployment turns the classes into Deployments; mypy sees the classes.
        deployment: Deployment = ChatDeployment if spec.task == "chat" else EmbeddingDeployment  # type: ignore[assignment]
        bound = deployment.options(
            name=deployment_name(spec.id), **spec.deployment.serve_options()
        ).bind(spec.model_dump())
        handles[spec.id] = (spec.task, bound)
    # Resolved here, where the service is started: replicas may run elsewhere.
    control_plane = ControlPlane.bind(str(state_dir()))  # type: ignore[attr-defined]
    ingress: Deployment = Ingress  # type: ignore[assignment]
    return ingress.options(**config.ingress.deployment.serve_options()).bind(
        handles, control_plane, config.ingress.limits()
    )
