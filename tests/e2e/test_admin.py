"""Administration of the live app from an operator's machine: the `inference` CLI in remote
mode, run from an empty directory (no store there), against the running service; key expiry;
the audit log; the concurrency quota with parallel streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from app.auth import KEY_CACHE_SECONDS
from tests.support.e2e import CHAT_MODEL, ROOT, inference_cli, make_client

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]


@pytest.fixture(scope="module")
def org_admin(admin_key: str) -> dict[str, Any]:
    """The one key made on the service's own store (as `ray exec` would on a cluster's head):
    AllProductsFullAccess over the organisation. Everything else goes over HTTP."""
    made: dict[str, Any] = inference_cli("keys", "create", "--permission-set",
                                         "AllProductsFullAccess", "--organization",
                                         "--name", "operator")
    return made


class RemoteCLI:
    """`inference ... --json` from an empty directory, configured by the environment."""

    def __init__(self, directory: Path, base_url: str, key: str) -> None:
        self.directory = directory
        self.env = {k: v for k, v in os.environ.items() if k != "INFERENCE_STATE_DIR"}
        # The product's code, whichever environment runs it; no store anywhere near.
        self.env.update(PYTHONPATH=str(ROOT), INFERENCE_BASE_URL=base_url,
                        INFERENCE_API_KEY=key)
        self.outputs: list[str] = []

    def run(self, *args: str, ok: bool = True) -> Any:
        done = subprocess.run([sys.executable, "-m", "control.cli", *args, "--json"],
                              check=False, cwd=self.directory, env=self.env, capture_output=True,
                              text=True, timeout=60)
        self.outputs.append(done.stdout)
        assert (done.returncode == 0) == ok, (done.returncode, done.stdout, done.stderr)
        return json.loads(done.stdout)


@pytest.fixture
def cli(tmp_path: Path, base_url: str, org_admin: dict[str, Any]) -> Iterator[RemoteCLI]:
    remote = RemoteCLI(tmp_path, base_url, org_admin["secret_key"])
    yield remote
    assert list(tmp_path.iterdir()) == [], "the remote CLI made no local store"


def test_remote_cli_manages_projects_keys_and_quotas(cli: RemoteCLI, base_url: str,
                                                     org_admin: dict[str, Any]) -> None:
    project = cli.run("projects", "create", "remote-team")
    assert project["name"] == "remote-team" and not project["default"]
    assert project["id"] in {p["id"] for p in cli.run("projects", "list")}
    updated = cli.run("projects", "update", project["id"], "--rpm", "100", "--tpm", "50000",
                      "--max-concurrent", "4", "--name", "renamed")
    assert (updated["name"], updated["rpm"], updated["tpm"], updated["max_concurrent"]) == (
        "renamed", 100, 50000, 4)

    made = cli.run("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                   "--project", project["id"], "--name", "app")
    assert made["secret_key"].startswith("sk-") and made["projects"] == [project["id"]]
    client = make_client(base_url, made["secret_key"], project["id"])
    assert client.models.list().data
    listed = {k["id"]: k for k in cli.run("keys", "list", "--project", project["id"])}
    assert made["id"] in listed and "secret_key" not in listed[made["id"]]

    revoked = cli.run("keys", "revoke", made["id"])
    assert revoked["revoked"] and revoked["revoked_now"]
    time.sleep(KEY_CACHE_SECONDS + 0.5)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()

    refused = cli.run("projects", "delete", cli.run("projects", "list")[0]["id"], ok=False)
    assert "default project" in refused["error"]
    assert cli.run("projects", "delete", project["id"])["deleted"]
    assert project["id"] not in {p["id"] for p in cli.run("projects", "list")}

    # Every change above is in the audit log, by the operator's key, from this machine.
    entries = cli.run("audit", "--limit", "100")["data"]
    mine = [(e["action"], e["target"]) for e in entries if e["actor_key_id"] == org_admin["id"]]
    for change in [("project.create", project["id"]),
                   ("project.update:name,rpm,tpm,max_concurrent", project["id"]),
                   ("key.create", made["id"]), ("key.revoke", made["id"]),
                   ("project.delete", project["id"])]:
        assert change in mine
    assert mine.index(("project.delete", project["id"])) < mine.index(
        ("project.create", project["id"])), "newest first"
    assert {e["client_address"] for e in entries if e["actor_key_id"] == org_admin["id"]} == {
        "127.0.0.1"}
    # No secret in any audit output, nor in any listing.
    audit_text = json.dumps(entries) + json.dumps(cli.run("keys", "list"))
    for secret in (made["secret_key"], org_admin["secret_key"]):
        assert secret not in audit_text


def test_a_full_access_key_manages_its_own_projects_keys_only(
        cli: RemoteCLI, base_url: str, admin_key: str) -> None:
    """The first-start key (GenerativeApisFullAccess over the default project) over the same
    CLI: keys of its project yes; another project, an organisation-wide key, no."""
    other = cli.run("projects", "create", "not-theirs")["id"]
    cli.env["INFERENCE_API_KEY"] = admin_key
    made = cli.run("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                   "--project", cli.run("projects", "list")[0]["id"])
    assert cli.run("keys", "revoke", made["id"])["revoked"]
    for refused in (
        cli.run("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                "--organization", ok=False),
        cli.run("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                "--project", other, ok=False),
        cli.run("projects", "create", "mine-now", ok=False),
    ):
        assert "HTTP 403" in refused["error"]
    assert [p["default"] for p in cli.run("projects", "list")] == [True]


def test_an_expired_key_is_refused(cli: RemoteCLI, base_url: str) -> None:
    expires = time.time() + 2
    made = cli.run("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                   "--organization", "--expires-at",
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires + 1)))
    client = make_client(base_url, made["secret_key"])
    assert client.models.list().data
    listed = {k["id"]: k for k in cli.run("keys", "list")}
    assert listed[made["id"]]["expires_at"] == made["expires_at"]
    time.sleep(max(0.0, made["expires_at"] - time.time()) + KEY_CACHE_SECONDS + 0.5)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert "expired" in str(refused.value)
    # Its one use before it expired shows in the listing.
    listed = {k["id"]: k for k in cli.run("keys", "list")}
    assert listed[made["id"]]["last_used_at"] is not None


def test_concurrency_quota_with_parallel_streams(cli: RemoteCLI, base_url: str) -> None:
    project = cli.run("projects", "create", "two-at-once", "--max-concurrent", "2")["id"]
    key = cli.run("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                  "--project", project)["secret_key"]
    client = make_client(base_url, key, project)

    def open_stream() -> openai.Stream[Any]:
        stream = client.chat.completions.create(model=CHAT_MODEL, messages=STORY, stream=True,
                                                max_tokens=400)
        next(iter(stream))  # the stream is under way
        return stream

    streams = [open_stream(), open_stream()]
    with pytest.raises(openai.RateLimitError) as info:
        open_stream()
    assert info.value.code == "rate_limit_concurrent"
    assert info.value.type == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) >= 1
    for stream in streams:
        stream.close()  # the client leaves: the stream ends, its slot is given back

    def open_when_a_slot_is_back() -> openai.Stream[Any]:
        # A slot is given back as the control plane hears that its stream ended: a moment
        # after the client saw the end (docs/api.md, "Quotas").
        deadline = time.monotonic() + 10
        while True:
            try:
                return open_stream()
            except openai.RateLimitError:
                assert time.monotonic() < deadline, "slots were never given back"
                time.sleep(0.2)

    again = open_when_a_slot_is_back()
    for _ in again:  # read to the end: a stream that ends by itself gives its slot back too
        pass
    final = [open_when_a_slot_is_back(), open_when_a_slot_is_back()]
    for stream in final:
        stream.close()
