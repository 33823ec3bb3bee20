"""Service metrics, exported through Ray's metrics system (Prometheus format on Ray's metrics
endpoint; Serve adds the deployment and replica tags). Not a hand-written /metrics route.

Tags are bounded: model ids and project ids come from the config and the store, routes from
the route table, statuses from the contract's table.
"""

from __future__ import annotations

from ray.serve import metrics

LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
TOKEN_GAP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

requests = metrics.Counter(
    "inference_requests", description="Requests by route, model, project and HTTP status.",
    tag_keys=("route", "model", "project", "status"))
prompt_tokens = metrics.Counter(
    "inference_prompt_tokens", description="Prompt tokens metered, by model and project.",
    tag_keys=("model", "project"))
completion_tokens = metrics.Counter(
    "inference_completion_tokens", description="Completion tokens metered, by model and "
    "project.", tag_keys=("model", "project"))
latency = metrics.Histogram(
    "inference_request_latency_seconds", description="End-to-end latency at the ingress, "
    "streams until their last byte.", boundaries=LATENCY_BUCKETS,
    tag_keys=("route", "model", "status"))
ttft = metrics.Histogram(
    "inference_time_to_first_token_seconds", description="From request arrival to the first "
    "streamed token.", boundaries=LATENCY_BUCKETS, tag_keys=("model",))
itl = metrics.Histogram(
    "inference_inter_token_latency_seconds", description="Gap between streamed chunks.",
    boundaries=TOKEN_GAP_BUCKETS, tag_keys=("model",))
