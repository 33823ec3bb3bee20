"""A Ray of one machine (``make serve``, the tests): nothing it starts listens beyond
loopback, and its token file is its owner's only.

On Linux Ray takes the machine's outward address as the node's and binds its agents and
metrics exporter there, where anyone on the network reaches them without credentials (the
metrics list every project id with its traffic). With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
Ray does what it does on a laptop Mac: the node's address is 127.0.0.1 (and ``ray start`` of
a multi-node cluster is refused, so cluster.yaml never sets it).

Ray 2.60 turns token authentication on for a local cluster and writes the token to
``~/.ray/auth_token`` with the process's umask (0644: every user of the machine can read it,
and with it use Ray's job API). :func:`own_ray_token` creates it first, 0600 in a 0700
directory, or takes the group's and others' access away from an existing one.

``python -m launch.loopback -- COMMAND...`` applies both, then runs COMMAND in its place.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def ray_token_path() -> Path:
    """Where Ray reads its token: ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def own_ray_token() -> Path | None:
    """The token file, owner-only (created if missing); None when Ray uses no token file
    (``RAY_AUTH_MODE`` other than token, or the token given in ``RAY_AUTH_TOKEN``)."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token" or \
            os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = ray_token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent == Path.home() / ".ray":  # Ray's own directory; a user-named one is theirs
        path.parent.chmod(0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        return path
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    with os.fdopen(fd, "w") as f:
        f.write(generate_new_authentication_token())
    return path


def apply() -> None:
    """For the Ray that starts from this process: loopback only, the token owner-only."""
    os.environ.update(LOOPBACK_ENV)
    # Ray reads the variable when it is imported: the processes it starts from here read it
    # from the environment, and a process that imported Ray already (a test session) gets
    # the value Ray would have read.
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]
    own_ray_token()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m launch.loopback -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    apply()
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
