"""The one object every route handler works through: the models, the control plane, and
the ingress's own caches over it (keys, quota allowances, the usage buffer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request

from app.accounting import Accounting
from app.auth import Authenticator, Caller, Need
from app.body import read_json, validated
from app.errors import bad_request
from app.model_catalog import ModelCatalog
from app.model_handles import ModelBackend
from app.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
)
from app.quota_gate import QuotaGate
from app.usage_meter import UsageMeter
from control.deployment import ControlPlaneAPI

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT_S = 600.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_AUDIO_BYTES = 25 * 1024 * 1024
DEFAULT_RESPONSES_RETENTION_S = 30 * 24 * 3600.0  # OpenAI keeps stored responses 30 days

ModelRequest = TypeVar("ModelRequest", ChatCompletionRequest, CompletionRequest,
                       EmbeddingRequest, ResponsesRequest)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_audio_bytes: int = DEFAULT_MAX_AUDIO_BYTES  # the whole upload of a transcription
    responses_retention_s: float = DEFAULT_RESPONSES_RETENTION_S  # a stored response's life


class Services:
    def __init__(self, models: ModelBackend, control_plane: ControlPlaneAPI, limits: Limits,
                 usage_flush_seconds: float = 1.0, catalog: ModelCatalog | None = None) -> None:
        self.models = models
        self.catalog = catalog or ModelCatalog()
        self.control_plane = control_plane
        self.limits = limits
        self.auth = Authenticator(control_plane)
        self.meter = UsageMeter(control_plane, interval=usage_flush_seconds)
        self.quotas = QuotaGate(control_plane)

    async def caller(self, request: Request, need: Need) -> Caller:
        """Who calls, for which project (the contract's 401/403/404 otherwise)."""
        who = await self.auth.caller(request.headers, request.path_params.get("project"), need)
        request.state.project = who.project_id
        return who

    async def model_request(self, request: Request, schema: type[ModelRequest], task: str
                            ) -> tuple[Caller, ModelRequest]:
        """Who calls, and their validated request for a model of ``task``: in this order,
        so a caller without a key learns nothing about the body or the models. The request's
        ``model`` is the model that runs it (an alias or an end-of-life model resolved)."""
        who = await self.caller(request, "model")
        limits = self.limits
        req = validated(schema, await read_json(request, limits.max_body_bytes,
                                                limits.body_timeout_s))
        model = await self.resolve_model(request, req.model, (task,))
        return who, req.model_copy(update={"model": model})

    async def check_task(self, request: Request, model: str, task: str) -> str:
        """The model that runs a request for ``model``, a model of ``task``."""
        return await self.resolve_model(request, model, (task,))

    async def resolve_model(self, request: Request, name: str, tasks: tuple[str, ...]) -> str:
        """The model that runs a request for ``name`` (app/model_catalog.py): the 404 for an
        unknown name, a 400 for a model of none of ``tasks``. Its lifecycle headers go on the
        reply (app/middleware/model_notice.py)."""
        resolved = self.catalog.resolve(name)
        actual = await self.models.task_of(resolved.model)
        if actual not in tasks:
            wanted = " or ".join(f"{_article(t)} {t}" for t in tasks)
            raise bad_request(
                f"'{name}' is {_article(actual)} {actual} model; {request.url.path} takes "
                f"{wanted} model.", param="model", code="model_not_supported")
        request.state.model = resolved.model
        request.state.model_notice = resolved.notice
        return resolved.model

    def books(self, request: Request, who: Caller, model: str, user: str | None) -> Accounting:
        return Accounting(request, who, model, user, meter=self.meter, quotas=self.quotas,
                          timeout_s=self.limits.request_timeout_s)


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
