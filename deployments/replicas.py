"""Typed operator config of one deployment's replicas: how many, what each asks Ray for, how
much work each takes at once, how requests pick one, and how they scale with load."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from deployments.strict import Strict

PREFIX_CACHE_ROUTER = "ray.serve.llm.request_router.PrefixCacheAffinityRouter"


class Autoscaling(Strict):
    """Replicas follow load: Serve's autoscaler adds one when the requests per replica stay
    above the target for ``upscale_delay_s`` and removes one when they stay below it for
    ``downscale_delay_s``. On a cluster, Ray's autoscaler then adds or removes the nodes
    those replicas need."""

    min_replicas: int = Field(1, ge=0, description="0 = scale to zero when idle; the first "
                              "request then waits for a replica (see wait_for_replica_s).")
    max_replicas: int = Field(ge=1, description="Upper bound on replicas.")
    initial_replicas: int | None = Field(None, ge=0, description="Replicas at deploy time; "
                                         "default min_replicas.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(30.0, ge=0, description="Load must stay high this long "
                                   "before a replica is added.")
    downscale_delay_s: float = Field(600.0, ge=0, description="Load must stay low this long "
                                     "before a replica is removed.")
    downscale_to_zero_delay_s: float | None = Field(
        None, ge=0, description="Delay before the last replica goes (min_replicas 0); "
        "default downscale_delay_s."
    )
    metrics_interval_s: float = Field(10.0, gt=0, description="How often replicas report load.")
    look_back_period_s: float = Field(30.0, gt=0, description="Window load is averaged over.")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self

    def serve_config(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Resources(Strict):
    """What one replica of a deployment asks Ray for, how many replicas run, and how much
    work each takes at once."""

    num_replicas: int | None = Field(
        None, ge=1, description="Fixed replica count; default 1 (without autoscaling)."
    )
    autoscaling: Autoscaling | None = Field(
        None, description="Replicas follow load between min_replicas and max_replicas."
    )
    num_cpus: float = Field(
        1.0, gt=0, description="CPU share Ray reserves per replica (fractions fit a laptop)."
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; 0 on a laptop.")
    accelerator_type: str | None = Field(
        None, description="Ray accelerator type the replica must run on (e.g. 'L4', "
        "'A100-80G', 'H100'); the cluster's GPU node types advertise it."
    )
    max_ongoing_requests: int = Field(
        64, ge=1, description="Requests one replica works on at once; higher = more batching."
    )
    max_queued_requests: int = Field(
        -1, ge=-1, description="Requests waiting for a replica; -1 = unbounded."
    )
    wait_for_replica_s: float | None = Field(
        None, gt=0, description="Longest a request waits for a replica to take it (scaling up "
        "from zero, every replica busy); past it a 503 with Retry-After. None = up to the "
        "ingress's request deadline."
    )
    request_router: Literal["power_of_two", "prefix_cache_affinity"] = Field(
        "power_of_two", description="How requests pick a replica: Serve's power-of-two "
        "choices, or (chat models) by prompt prefix so replicas reuse their prefix cache."
    )
    health_check_period_s: float = Field(
        10.0, gt=0, description="How often Serve asks a replica whether its engine is alive."
    )
    health_check_timeout_s: float = Field(
        30.0, gt=0, description="A health check slower than this counts as failed."
    )

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> Resources:
        if self.autoscaling is not None:
            if self.num_replicas is not None:
                raise ValueError("give either num_replicas or autoscaling, not both")
            if self.autoscaling.target_ongoing_requests > self.max_ongoing_requests:
                raise ValueError(
                    "autoscaling.target_ongoing_requests exceeds max_ongoing_requests: the "
                    "target could never be reached"
                )
        return self

    def serve_options(self) -> dict[str, Any]:
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        if self.accelerator_type:
            actor["accelerator_type"] = self.accelerator_type
        options: dict[str, Any] = {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
        }
        if self.autoscaling is not None:
            options["autoscaling_config"] = self.autoscaling.serve_config()
        else:
            options["num_replicas"] = self.num_replicas or 1
        if self.request_router == "prefix_cache_affinity":
            options["request_router_config"] = {"request_router_class": PREFIX_CACHE_ROUTER}
        return options
