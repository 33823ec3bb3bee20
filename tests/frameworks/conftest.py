"""The framework suites' own pytest set-up (run in their own environments, not the project's).

``MODEL_QUALITY``: the standard cases that only a larger model than the built-in chat model
can pass, each with what the service was asked and what the model answered. They run and are
reported as expected failures; every other case must pass.
"""

from __future__ import annotations

import pytest

MODEL_QUALITY: dict[str, str] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = MODEL_QUALITY.get(item.name) or MODEL_QUALITY.get(item.originalname)  # type: ignore[attr-defined]
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))
