"""Embedding replica metrics, exported through Ray's metrics system like the ingress's own
(app/metrics.py); Serve adds the deployment and replica tags."""

from __future__ import annotations

from ray.serve import metrics

QUEUE_WAIT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

embedding_batch_size = metrics.Histogram(
    "inference_embedding_batch_size", description="Inputs encoded together in one batch.",
    boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256], tag_keys=("model",))
embedding_queue_wait = metrics.Histogram(
    "inference_embedding_queue_wait_seconds", description="Time an input waits for its batch.",
    boundaries=QUEUE_WAIT_BUCKETS, tag_keys=("model",))
