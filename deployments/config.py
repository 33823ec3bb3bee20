"""Typed operator config: the ``args`` of the Serve application in ``config/*.yaml``.

The Serve config file is the only place where models, replicas and resources are declared
(DESIGN.md). Serve hands the application's ``args`` to :func:`deployments.app.build_app`, which
validates them here; unknown keys are refused so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    """What one replica of a deployment asks Ray for, and how much work it takes at once."""

    num_replicas: int = Field(1, ge=1, description="Replicas started; more serve more at once.")
    num_cpus: float = Field(
        1.0, gt=0, description="CPU share Ray reserves per replica (fractions fit a laptop)."
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; 0 on a laptop.")
    max_ongoing_requests: int = Field(
        64, ge=1, description="Requests one replica works on at once; higher = more batching."
    )
    max_queued_requests: int = Field(
        -1, ge=-1, description="Requests waiting for a replica; -1 = unbounded."
    )

    def serve_options(self) -> dict[str, Any]:
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        return {
            "num_replicas": self.num_replicas,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
        }


class ChatEngine(Strict):
    """vLLM engine settings for one chat model; each maps to a vLLM CLI flag."""

    max_model_len: int = Field(2048, ge=16, description="Context length; bounds KV memory.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weight/activation dtype; auto follows the checkpoint."
    )
    kv_cache_gib: int = Field(
        1,
        ge=1,
        description="KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE); sized explicitly so two "
        "engines fit on one machine.",
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Share of GPU memory the engine may take (GPU only)."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica spans.")
    max_num_seqs: int = Field(64, ge=1, description="Sequences batched per engine step.")
    enforce_eager: bool = Field(True, description="Skip graph capture: faster start, slower.")
    tool_call_parser: str | None = Field(
        None, description="vLLM tool parser for tool_choice 'auto'; None = no auto tool calls."
    )
    chat_template: str | None = Field(None, description="Jinja template file overriding the model's.")
    extra_args: list[str] = Field(
        default_factory=list, description="Further vLLM CLI flags, passed as given."
    )


class EmbeddingEngine(Strict):
    """sentence-transformers settings for one embedding model."""

    device: str = Field("cpu", description="torch device of the replica.")
    max_batch_size: int = Field(32, ge=1, description="Inputs encoded together; higher = "
                                "more throughput, more latency per request.")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, description="How long a batch waits to fill; trades latency for batching."
    )
    truncate: bool = Field(
        False, description="Truncate over-long inputs instead of refusing them with a 400."
    )


class ModelSpec(Strict):
    id: str = Field(description="Public model id clients send; may contain '/' and ':'.")
    task: Literal["chat", "embedding"]
    source: str = Field(
        description="'builtin:NAME' (shipped in a package), a Hugging Face id or a local path."
    )
    owned_by: str = "organization"
    chat: ChatEngine | None = None
    embedding: EmbeddingEngine | None = None
    deployment: Resources = Field(default_factory=Resources)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not MODEL_ID_PATTERN.match(value):
            raise ValueError(f"model id {value!r} has characters outside [A-Za-z0-9._/:-]")
        return value

    @model_validator(mode="after")
    def _engine_matches_task(self) -> ModelSpec:
        if self.task == "chat":
            if self.embedding is not None:
                raise ValueError(f"{self.id}: a chat model takes 'chat', not 'embedding'")
            self.chat = self.chat or ChatEngine()
        else:
            if self.chat is not None:
                raise ValueError(f"{self.id}: an embedding model takes 'embedding', not 'chat'")
            self.embedding = self.embedding or EmbeddingEngine()
        return self


class IngressSpec(Strict):
    deployment: Resources = Field(
        default_factory=lambda: Resources(num_cpus=0.25, max_ongoing_requests=256)
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body accepted; larger is a 413."
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="Deadline for one request, streams included; past it the "
        "engine request is aborted and the client gets a 503 (or an error event)."
    )

    def limits(self) -> dict[str, Any]:
        return {"max_body_bytes": self.max_body_bytes,
                "request_timeout_s": self.request_timeout_s}


class AppConfig(Strict):
    models: list[ModelSpec] = Field(min_length=1)
    ingress: IngressSpec = Field(default_factory=IngressSpec)

    @model_validator(mode="after")
    def _unique_ids(self) -> AppConfig:
        ids = [m.id for m in self.models]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"model ids must be unique: {dupes}")
        return self


def app_args_from_serve_config(path: str | Path, app_name: str | None = None) -> dict[str, Any]:
    """The ``args`` of one application in a Serve config file (YAML read safely)."""
    data = yaml.safe_load(Path(path).read_text())
    apps = data.get("applications") or []
    for app in apps:
        if app_name is None or app.get("name") == app_name:
            return dict(app.get("args") or {})
    raise ValueError(f"{path} has no application {app_name!r}")
