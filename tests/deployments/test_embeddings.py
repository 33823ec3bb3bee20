"""Embedding replica helpers: `dimensions`, `encoding_format`, encoding threads."""

from __future__ import annotations

import base64

import numpy as np

from deployments.embeddings import encode_threads, encode_vector, shorten


def test_shorten_keeps_the_head_and_renormalises() -> None:
    v = np.array([3.0, 4.0, 12.0], dtype=np.float32) / 13.0
    out = shorten(v, 2)
    assert np.allclose(out, [0.6, 0.8])
    assert np.isclose(np.linalg.norm(out), 1.0)
    assert shorten(v, None) is v


def test_base64_is_little_endian_float32_of_the_float_form() -> None:
    v = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    raw = base64.b64decode(encode_vector(v, "base64"))  # type: ignore[arg-type]
    assert np.frombuffer(raw, dtype="<f4").tolist() == encode_vector(v, "float")


def test_encoding_uses_every_core_the_layout_gives_unless_configured() -> None:
    assert encode_threads(None, {0, 1}) == 2  # under the CPU layout: every core
    assert encode_threads(None, None) is None  # no layout: Ray's choice (num_cpus)
    assert encode_threads(1, {0, 1}) == 1  # the config's word wins
