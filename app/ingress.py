"""The ingress Serve deployment: the starlette API in front of the model deployments."""

from __future__ import annotations

from typing import Any

from ray import serve
from starlette.applications import Starlette

from app.api import build_api
from app.model_catalog import ModelCatalog
from app.model_handles import ServeModels
from app.services import Limits
from control.deployment import RemoteCalls
from messages import ModelRoute


@serve.deployment
@serve.ingress()
class Ingress:
    def __init__(self, models: dict[str, ModelRoute], control_plane: Any,
                 limits: dict[str, Any], catalog: ModelCatalog) -> None:
        # models: model id -> its route, for the models that run; limits: the fields of
        # app.services.Limits; catalog: aliases and lifecycles of every model.
        self.models = ServeModels(models)
        self.control_plane = RemoteCalls(control_plane)
        self.limits = Limits(**limits)
        self.catalog = catalog

    def __serve_build_asgi_app__(self) -> Starlette:
        # Serve's proxy mints or echoes x-request-id and sets it on every response.
        return build_api(self.models, self.control_plane, limits=self.limits,
                         catalog=self.catalog, add_request_id_header=False)
