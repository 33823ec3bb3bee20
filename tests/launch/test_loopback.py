"""Ray's token file is its owner's only, whether the launcher creates it or finds it."""

from __future__ import annotations

import stat
import sys
import types
from pathlib import Path

import pytest

from control.store import Store
from launch import loopback


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_missing_token_is_created_owner_only(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    path = loopback.own_ray_token()
    assert path == tmp_path / ".ray" / "auth_token"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert len(path.read_text()) >= 32


def test_a_readable_token_is_closed_and_kept(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ray").mkdir(mode=0o755)
    token = tmp_path / ".ray" / "auth_token"
    token.write_text("a" * 64)
    token.chmod(0o644)  # what Ray itself writes
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert loopback.own_ray_token() == token
    assert mode(token) == 0o600 and mode(token.parent) == 0o700
    assert token.read_text() == "a" * 64


def test_apply_makes_ray_take_loopback_as_the_node_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(loopback.os, "environ", dict(loopback.os.environ))
    # A process that imported Ray already gets what Ray would have read from the variable.
    constants = types.SimpleNamespace(ENABLE_RAY_CLUSTER=True)
    monkeypatch.setitem(sys.modules, "ray._private.ray_constants", constants)
    loopback.apply()
    assert loopback.os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert constants.ENABLE_RAY_CLUSTER is False
    assert mode(tmp_path / "token") == 0o600


def test_the_state_directory_is_owner_only(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o755)
    Store(tmp_path / "state")
    assert mode(tmp_path / "state") == 0o700
