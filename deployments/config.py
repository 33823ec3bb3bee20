"""Typed operator config: the ``args`` of the Serve application in ``config/*.yaml``.

The Serve config file is the only place where models, replicas and resources are declared
(docs/operations.md, "Configuration reference"). Serve hands the application's ``args`` to
:func:`deployments.app.build_app`, which validates them here; unknown keys are refused so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from deployments.replicas import Resources
from deployments.strict import Strict

MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$")


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
        0.005, ge=0, description="How long a busy replica (one that has just encoded a "
        "batch) waits for more inputs before it encodes a batch that is not full; an idle "
        "one starts at once, and inputs that arrive while a batch encodes go together in "
        "the next (deployments/batching.py). More = bigger batches under load."
    )
    truncate: bool = Field(
        False, description="Truncate over-long inputs instead of refusing them with a 400."
    )
    cpu_threads: int | None = Field(
        None, ge=1, description="torch's threads for encoding on CPU. None = under the CPU "
        "layout (launch/cpu_layout.py) one per CPU the replica runs on (every CPU); "
        "otherwise Ray's default, the replica's num_cpus (at least 1). More = faster batches, "
        "and less CPU left for the rest of the stack on the same machine."
    )
    ingress_calls_in_flight: int | None = Field(
        None, ge=1, description="Calls each ingress replica keeps open to this model; "
        "requests beyond wait in the ingress and go together in the next call (app/"
        "coalescing.py). Fewer = bigger batches and less per-call CPU, more waiting at high "
        "load; at least the replicas' count. None = one call per request."
    )
    placement: Literal["replica", "ingress"] = Field(
        "replica", description="Where the model encodes. 'replica': replicas of its own, "
        "reached from the ingress through a Serve handle (the default; the only choice for a "
        "model on a GPU or one that autoscales). 'ingress': inside each ingress replica, with "
        "the same batching, for a model small enough to share its process: a request then "
        "skips the call between deployments, which on a 2-core machine cost more CPU than "
        "the model itself (docs/performance.md, \"Embeddings against Infinity\"). The "
        "model's deployment section then only bounds its queue (max_ongoing_requests + "
        "max_queued_requests per ingress replica)."
    )
    dimensions: int | None = Field(
        None, ge=1, description="The model's vector size, for its model card while no replica "
        "runs; required when it can scale to zero. A replica whose model differs refuses to "
        "start."
    )
    max_seq_length: int | None = Field(
        None, ge=1, description="Tokens per input (the card's context_length), as above."
    )


class RerankEngine(Strict):
    """sentence-transformers ``CrossEncoder`` settings for one rerank model: it scores each
    (query, document) pair itself."""

    device: str = Field("cpu", description="torch device of the replica.")
    max_batch_size: int = Field(32, ge=1, description="(query, document) pairs scored "
                                "together; higher = more throughput, more latency per request.")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, description="How long a busy replica waits for more pairs before it "
        "scores a batch that is not full (deployments/batching.py, as for embeddings)."
    )
    truncate: bool = Field(
        False, description="Truncate an over-long (query, document) pair to the model's "
        "length instead of refusing it with a 400."
    )
    cpu_threads: int | None = Field(
        None, ge=1, description="torch's threads for scoring on CPU; None as for embeddings "
        "(every CPU under the CPU layout, else Ray's default)."
    )
    max_seq_length: int | None = Field(
        None, ge=1, description="Tokens per (query, document) pair (the card's "
        "context_length), for the model card while no replica runs; required when it can "
        "scale to zero. A replica whose model differs refuses to start."
    )


class TranscriptionEngine(Strict):
    """faster-whisper (CTranslate2) settings for one speech-to-text model."""

    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Where the model runs.")
    compute_type: Literal["int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16",
                          "bfloat16", "float32"] = Field(
        "int8", description="What CTranslate2 computes in (the model id should say it); "
        "int8 on CPU, float16 on GPU.")
    beam_size: int = Field(5, ge=1, le=16, description="Beams of the decoder; 1 = greedy, "
                           "faster, a little less accurate.")
    cpu_threads: int | None = Field(
        None, ge=1, description="CTranslate2's threads per transcription on CPU. None = under "
        "the CPU layout one per CPU the replica runs on (every CPU); otherwise Ray's default, "
        "the replica's num_cpus (at least 1).")
    num_workers: int = Field(
        1, ge=1, description="Transcriptions one replica runs at once (each with cpu_threads); "
        "more only helps with cores or a GPU to spare.")
    batch_size: int | None = Field(
        None, ge=1, description="Decode one file's 30-second windows this many at a time "
        "(faster-whisper's batched pipeline, with its voice-activity filter); None = one "
        "window after the other, each conditioned on the previous text. Helps long files "
        "on a GPU, not on a few CPU cores (docs/performance.md, \"Speech to text\").")


class ModelSpec(Strict):
    id: str = Field(description="Public model id clients send; may contain '/' and ':'.")
    task: Literal["chat", "embedding", "rerank", "transcription"]
    source: str = Field(
        description="'builtin:NAME' (shipped in a package), a Hugging Face id or a local path."
    )
    owned_by: str = "organization"
    # The lifecycle (app/model_catalog.py, docs/api.md "Models"): clients see it in the card;
    # a deprecated model's replies say it in their headers; an end-of-life model runs no more
    # and its requests go to its replacement.
    status: Literal["preview", "active", "deprecated", "eol"] = Field(
        "active", description="preview, active, deprecated (still served, replies carry "
        "Deprecation and Sunset headers) or eol (no replica; served by its replacement).")
    deprecated_at: date | None = Field(
        None, description="The day it was (or will be) deprecated; deprecated and eol models "
        "need it (quote it in YAML: \"2026-11-01\").")
    eol_at: date | None = Field(
        None, description="The day it ends (the Sunset header); deprecated and eol models "
        "need it.")
    replacement: str | None = Field(
        None, description="The model of the same task that takes over; an eol model needs "
        "one.")
    aliases: list[str] = Field(
        default_factory=list, description="Other names clients may send for this model; "
        "replies and the ledger name the model itself.")
    chat: ChatEngine | None = None
    embedding: EmbeddingEngine | None = None
    rerank: RerankEngine | None = None
    transcription: TranscriptionEngine | None = None
    deployment: Resources = Field(default_factory=Resources)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not MODEL_ID_PATTERN.match(value):
            raise ValueError(f"model id {value!r} has characters outside [A-Za-z0-9._/:-]")
        return value

    @field_validator("aliases")
    @classmethod
    def _valid_aliases(cls, values: list[str]) -> list[str]:
        for value in values:
            if not MODEL_ID_PATTERN.match(value):
                raise ValueError(f"alias {value!r} has characters outside [A-Za-z0-9._/:-]")
        return values

    @model_validator(mode="after")
    def _lifecycle_is_complete(self) -> ModelSpec:
        retiring = self.status in ("deprecated", "eol")
        if retiring and (self.deprecated_at is None or self.eol_at is None):
            raise ValueError(f"{self.id}: a {self.status} model needs deprecated_at and eol_at "
                             "(its replies' Deprecation and Sunset headers)")
        if not retiring and (self.deprecated_at is not None or self.eol_at is not None):
            raise ValueError(f"{self.id}: deprecated_at and eol_at are for a deprecated or eol "
                             f"model; this one is {self.status}")
        if retiring and self.eol_at < self.deprecated_at:  # type: ignore[operator]
            raise ValueError(f"{self.id}: eol_at {self.eol_at} is before deprecated_at "
                             f"{self.deprecated_at}")
        if self.status == "eol" and self.replacement is None:
            raise ValueError(f"{self.id}: an eol model needs a replacement, which serves its "
                             "requests (to stop serving a name, remove the model)")
        if self.replacement == self.id:
            raise ValueError(f"{self.id}: a model cannot replace itself")
        return self

    def _check_coalescing(self, calls: int | None) -> None:
        if calls is None:
            return
        if self.deployment.autoscaling is not None:
            # Serve's autoscaler counts a replica's ongoing calls; coalesced requests would
            # hide the load it scales on.
            raise ValueError(f"{self.id}: embedding.ingress_calls_in_flight cannot be used "
                             "with deployment.autoscaling (the autoscaler counts calls, not "
                             "requests)")
        replicas = self.deployment.num_replicas or 1
        if calls < replicas:
            raise ValueError(f"{self.id}: embedding.ingress_calls_in_flight {calls} would leave "
                             f"some of the {replicas} replicas idle; use at least {replicas}")

    @model_validator(mode="after")
    def _engine_matches_task(self) -> ModelSpec:
        if self.task != "transcription" and self.transcription is not None:
            raise ValueError(f"{self.id}: 'transcription' is for transcription models")
        if self.task != "rerank" and self.rerank is not None:
            raise ValueError(f"{self.id}: 'rerank' is for rerank models")
        if self.task == "rerank":
            self._check_rerank()
            return self
        if self.task == "transcription":
            if self.chat is not None or self.embedding is not None:
                raise ValueError(f"{self.id}: a transcription model takes 'transcription', "
                                 "not 'chat' or 'embedding'")
            self.transcription = self.transcription or TranscriptionEngine()
            if self.deployment.request_router != "power_of_two":
                raise ValueError(f"{self.id}: prefix-cache routing is for chat models")
        elif self.task == "chat":
            if self.embedding is not None:
                raise ValueError(f"{self.id}: a chat model takes 'chat', not 'embedding'")
            self.chat = self.chat or ChatEngine()
        else:
            if self.chat is not None:
                raise ValueError(f"{self.id}: an embedding model takes 'embedding', not 'chat'")
            self.embedding = self.embedding or EmbeddingEngine()
            scaling = self.deployment.autoscaling
            if scaling is not None and scaling.min_replicas == 0 and (
                    self.embedding.dimensions is None or self.embedding.max_seq_length is None):
                raise ValueError(
                    f"{self.id}: an embedding model that can scale to zero needs "
                    "embedding.dimensions and embedding.max_seq_length, so GET /v1/models can "
                    "describe it while no replica runs")
            if self.deployment.request_router != "power_of_two":
                raise ValueError(f"{self.id}: prefix-cache routing is for chat models")
            self._check_coalescing(self.embedding.ingress_calls_in_flight)
            if self.embedding.placement == "ingress":
                self._check_in_ingress()
        tp = self.chat.tensor_parallel_size if self.chat else 1
        if tp > 1 and self.deployment.num_gpus != tp:
            raise ValueError(
                f"{self.id}: tensor_parallel_size {tp} spans {tp} GPUs, so deployment.num_gpus "
                f"must be {tp} (got {self.deployment.num_gpus:g})"
            )
        return self

    def _check_in_ingress(self) -> None:
        """A model that encodes inside the ingress has no replicas of its own: nothing may
        ask for what only they would have."""
        assert self.embedding is not None
        refused = [
            (self.embedding.device != "cpu",
             f"embedding.device {self.embedding.device!r}: the ingress holds no GPU"),
            (self.deployment.num_gpus > 0, "deployment.num_gpus: the ingress holds no GPU"),
            (self.deployment.autoscaling is not None,
             "deployment.autoscaling: it scales with the ingress"),
            (self.deployment.num_replicas not in (None, 1),
             "deployment.num_replicas: one model per ingress replica"),
            (self.embedding.ingress_calls_in_flight is not None,
             "embedding.ingress_calls_in_flight: there are no calls to coalesce"),
        ]
        for wrong, why in refused:
            if wrong:
                raise ValueError(f"{self.id}: embedding.placement 'ingress' cannot be used "
                                 f"with {why}")

    def _check_rerank(self) -> None:
        if self.chat is not None or self.embedding is not None:
            raise ValueError(f"{self.id}: a rerank model takes 'rerank', not 'chat' or "
                             "'embedding'")
        self.rerank = self.rerank or RerankEngine()
        if self.deployment.request_router != "power_of_two":
            raise ValueError(f"{self.id}: prefix-cache routing is for chat models")
        scaling = self.deployment.autoscaling
        if scaling is not None and scaling.min_replicas == 0 and (
                self.rerank.max_seq_length is None):
            raise ValueError(f"{self.id}: a rerank model that can scale to zero needs "
                             "rerank.max_seq_length, so GET /v1/models can describe it while "
                             "no replica runs")

    def serve_options(self) -> dict[str, Any]:
        """Serve deployment options for this model's replicas.

        A replica spanning several GPUs (tensor parallelism) gets a placement group: one
        bundle per GPU, packed onto one node; the replica itself holds only CPU in the first
        bundle and vLLM's workers take the GPUs (vLLM's Ray executor).
        """
        options = self.deployment.serve_options()
        tp = self.chat.tensor_parallel_size if self.chat else 1
        if tp > 1:
            extra = ({f"accelerator_type:{self.deployment.accelerator_type}": 0.001}
                     if self.deployment.accelerator_type else {})
            options["placement_group_bundles"] = [
                {"CPU": self.deployment.num_cpus, "GPU": 1.0, **extra},
                *({"GPU": 1.0, **extra} for _ in range(tp - 1)),
            ]
            options["placement_group_strategy"] = "STRICT_PACK"
            options["ray_actor_options"] = {"num_cpus": self.deployment.num_cpus}
        return options


class HttpFront(Strict):
    """The address the ingress replicas serve HTTP on themselves (app/http_front.py)."""

    host: str = Field(min_length=1, description="Interface to listen on: 127.0.0.1 for "
                      "this machine only, 0.0.0.0 for every interface.")
    port: int = Field(ge=1, le=65535)


class IngressSpec(Strict):
    http_front: HttpFront | None = Field(
        None, description="Where the ingress replicas take HTTP themselves, with no Serve "
        "proxy in front (the Serve config then sets `proxy_location: Disabled`). Unset: "
        "Serve's proxy takes HTTP at `http_options` and calls the ingress."
    )
    deployment: Resources = Field(
        default_factory=lambda: Resources(num_cpus=0.25, max_ongoing_requests=256)
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body accepted; larger is a 413."
    )
    max_audio_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="Largest audio upload (the whole multipart "
        "body of POST /v1/audio/transcriptions) accepted; larger is a 413."
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="Deadline for one request, streams included; past it the "
        "engine request is aborted and the client gets a 503 (or an error event)."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Longest a client may take to send its request body; past "
        "it a 408. Shorter frees the slots of slow clients sooner; too short refuses large "
        "bodies on slow links."
    )
    responses_retention_days: float = Field(
        30.0, gt=0, description="How long a stored response of the Responses API (and its "
        "conversation) is kept; past it the response is deleted. Longer lets conversations "
        "resume later; shorter keeps less of the callers' text on disk."
    )

    @model_validator(mode="after")
    def _router(self) -> IngressSpec:
        if self.deployment.request_router != "power_of_two":
            raise ValueError("prefix-cache routing is for chat models, not the ingress")
        return self

    @model_validator(mode="after")
    def _front_is_not_autoscaled(self) -> IngressSpec:
        # Serve's autoscaler counts the requests that reach a replica through Serve; the
        # ingress's own front is not Serve's, so it would see none and scale it down.
        if self.http_front is not None and self.deployment.autoscaling is not None:
            raise ValueError("ingress.http_front cannot be used with ingress.deployment."
                             "autoscaling: Serve's autoscaler does not see the requests the "
                             "ingress takes itself; set num_replicas")
        return self

    def limits(self) -> dict[str, Any]:
        return {"max_body_bytes": self.max_body_bytes,
                "max_audio_bytes": self.max_audio_bytes,
                "request_timeout_s": self.request_timeout_s,
                "body_timeout_s": self.body_timeout_s,
                "responses_retention_s": self.responses_retention_days * 24 * 3600}


class AppConfig(Strict):
    models: list[ModelSpec] = Field(min_length=1)
    ingress: IngressSpec = Field(default_factory=IngressSpec)

    @model_validator(mode="after")
    def _unique_ids(self) -> AppConfig:
        names = [m.id for m in self.models] + [a for m in self.models for a in m.aliases]
        dupes = sorted({i for i in names if names.count(i) > 1})
        if dupes:
            raise ValueError(f"model ids and aliases must be unique: {dupes}")
        return self

    @model_validator(mode="after")
    def _replacements_are_served(self) -> AppConfig:
        """Every replacement is a model of the same task here, and following them from an
        end-of-life model reaches a model that runs."""
        by_id = {m.id: m for m in self.models}
        for model in self.models:
            if model.replacement is None:
                continue
            successor = by_id.get(model.replacement)
            if successor is None:
                raise ValueError(f"{model.id}: replacement {model.replacement!r} is not a model "
                                 "of this config")
            if successor.task != model.task:
                raise ValueError(f"{model.id}: replacement {successor.id!r} is a "
                                 f"{successor.task} model, not a {model.task} model")
            seen = [model.id]
            while successor.status == "eol":
                if successor.id in seen:
                    raise ValueError(f"replacements go round in a circle: {seen}")
                seen.append(successor.id)
                following = by_id.get(successor.replacement or "")
                if following is None:
                    raise ValueError(f"{successor.id}: replacement {successor.replacement!r} "
                                     "is not a model of this config")
                successor = following
        if all(m.status == "eol" for m in self.models):
            raise ValueError("every model is eol: at least one must run")
        return self

    def served(self) -> list[ModelSpec]:
        """The models that run (every one but the end-of-life ones)."""
        return [m for m in self.models if m.status != "eol"]


def app_args_from_serve_config(path: str | Path, app_name: str | None = None) -> dict[str, Any]:
    """The ``args`` of one application in a Serve config file (YAML read safely)."""
    data = yaml.safe_load(Path(path).read_text())
    apps = data.get("applications") or []
    for app in apps:
        if app_name is None or app.get("name") == app_name:
            return dict(app.get("args") or {})
    raise ValueError(f"{path} has no application {app_name!r}")
