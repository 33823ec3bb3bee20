"""config/serve.env: the settings Serve's processes start with."""

from __future__ import annotations

from pathlib import Path

import pytest

from launch.serve_env import serve_env


def test_the_shipped_file_reads_and_sets_only_serve_and_edge_settings() -> None:
    assert all(name.startswith(("RAY_SERVE_", "INFERENCE_")) for name in serve_env())
    assert serve_env()["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == \
        "launch.http_edge.proxy_middlewares"


def test_settings_and_comments_are_read(tmp_path: Path) -> None:
    path = tmp_path / "serve.env"
    path.write_text("# a comment\n\nRAY_SERVE_ENABLE_HA_PROXY = 1\n")
    assert serve_env(path) == {"RAY_SERVE_ENABLE_HA_PROXY": "1"}


def test_a_line_without_a_value_is_refused_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "serve.env"
    path.write_text("# comment\n\nRAY_SERVE_ENABLE_HA_PROXY=1\nexport THING\n")
    with pytest.raises(ValueError, match=r"serve.env:4: expected KEY=VALUE"):
        serve_env(path)
