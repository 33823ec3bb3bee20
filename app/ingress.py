"""The ingress Serve deployment: the starlette API in front of the model deployments."""

from __future__ import annotations

from typing import Any

from ray import serve
from starlette.applications import Starlette

from app.api import build_api
from app.backend import ServeModels
from app.control_plane import RemoteCalls


@serve.deployment
@serve.ingress()
class Ingress:
    def __init__(
        self,
        models: dict[str, tuple[str, Any, dict[str, Any]]],
        control_plane: Any,
        limits: dict[str, Any],
    ) -> None:
        # models: public model id -> (task, handle of the deployment that serves it, what
        # the config says of it: see ServeModels);
        # limits: build_api's keyword limits (max_body_bytes, request_timeout_s).
        self.models = ServeModels(models)
        self.control_plane = RemoteCalls(control_plane)
        self.limits = limits

    def __serve_build_asgi_app__(self) -> Starlette:
        # Serve's proxy mints or echoes x-request-id and sets it on every response.
        return build_api(
            self.models,
            self.control_plane,
            **self.limits,
            add_request_id_header=False,
        )
