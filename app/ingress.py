"""The ingress Serve deployment: the starlette API in front of the model deployments."""

from __future__ import annotations

from typing import Any

from ray import serve
from starlette.applications import Starlette

from app.api import build_api
from app.model_handles import ServeModels
from app.services import Limits
from control.deployment import RemoteCalls
from messages import ModelRoute


@serve.deployment
@serve.ingress()
class Ingress:
    def __init__(self, models: dict[str, ModelRoute], control_plane: Any,
                 limits: dict[str, Any]) -> None:
        # models: public model id -> its route; limits: the fields of app.services.Limits.
        self.models = ServeModels(models)
        self.control_plane = RemoteCalls(control_plane)
        self.limits = Limits(**limits)

    async def check_health(self) -> None:
        # Serve replaces a replica whose check raises: here, one whose in-ingress embedding
        # model can no longer encode (app/in_ingress.py).
        await self.models.check_health()

    def __serve_build_asgi_app__(self) -> Starlette:
        # Serve's proxy mints or echoes x-request-id and sets it on every response.
        return build_api(self.models, self.control_plane, limits=self.limits,
                         add_request_id_header=False)
