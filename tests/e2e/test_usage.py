"""Usage metering on the live app: the ledger equals what clients were told."""

from __future__ import annotations

import asyncio
import glob
import time
from collections import Counter
from typing import Any

import openai
import pytest

from control.keys import hash_secret
from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, inference_cli, make_client

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

STORY = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]


def ledger(project: str) -> Counter[tuple[str, str, str]]:
    """(key, model, field) -> total, from `inference usage --json`."""
    totals: Counter[tuple[str, str, str]] = Counter()
    for row in inference_cli("usage", "--project", project):
        for field in ("requests", "prompt_tokens", "completion_tokens"):
            totals[(row["key_id"], row["model"], field)] += row[field]
    return totals


def wait_for_ledger(project: str, want: Counter[tuple[str, str, str]],
                    seconds: float = 15) -> Counter[tuple[str, str, str]]:
    deadline = time.monotonic() + seconds
    got = ledger(project)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.5)
        got = ledger(project)
    return got


@pytest.fixture(scope="module")
def tenants(admin_key: str) -> dict[str, Any]:
    projects = [inference_cli("projects", "create", f"metered-{i}")["id"] for i in range(2)]
    keys = [
        (projects[0], inference_cli("keys", "create", "--permission-set",
                                    "GenerativeApisFullAccess", "--project", projects[0])),
        (projects[0], inference_cli("keys", "create", "--permission-set",
                                    "GenerativeApisModelAccess", "--project", projects[0])),
        (projects[1], inference_cli("keys", "create", "--permission-set",
                                    "GenerativeApisModelAccess", "--project", projects[1])),
    ]
    return {"projects": projects, "keys": keys}


async def _traffic(base_url: str, project: str, key: dict[str, Any],
                   told: dict[str, Counter[tuple[str, str, str]]]) -> None:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/{project}/v1",
                                api_key=key["secret_key"], max_retries=0, timeout=120)

    def add(model: str, usage: Any) -> None:
        c = told[project]
        c[(key["id"], model, "requests")] += 1
        c[(key["id"], model, "prompt_tokens")] += usage.prompt_tokens
        c[(key["id"], model, "completion_tokens")] += getattr(usage, "completion_tokens", 0)

    async def chat(i: int) -> None:
        reply = await client.chat.completions.create(model=CHAT_MODEL, messages=STORY,
                                                     max_tokens=4 + i, n=1 + i % 2)
        add(CHAT_MODEL, reply.usage)

    async def stream(i: int) -> None:
        last = None
        async for chunk in await client.chat.completions.create(
                model=CHAT_MODEL, messages=STORY, max_tokens=5 + i, stream=True,
                stream_options={"include_usage": bool(i % 2)}):
            last = chunk.usage
        add(CHAT_MODEL, last)

    async def embed(i: int) -> None:
        reply = await client.embeddings.create(model=EMBED_MODEL,
                                               input=[f"text {j}" for j in range(i + 1)])
        add(EMBED_MODEL, reply.usage)

    await asyncio.gather(*(f(i) for i in range(3) for f in (chat, stream, embed)))


async def test_ledger_equals_the_sum_of_usage_per_project(base_url: str,
                                                          tenants: dict[str, Any]) -> None:
    told: dict[str, Counter[tuple[str, str, str]]] = {p: Counter() for p in tenants["projects"]}
    await asyncio.gather(*(_traffic(base_url, p, k, told) for p, k in tenants["keys"]))
    for project in tenants["projects"]:
        assert wait_for_ledger(project, told[project]) == told[project]


def test_usage_route_returns_the_projects_rows(base_url: str, tenants: dict[str, Any]) -> None:
    project, key = tenants["keys"][0]
    client = make_client(base_url, key["secret_key"], project)
    client.embeddings.create(model=EMBED_MODEL, input="counted")
    rows = client.get("/usage", cast_to=object)
    assert rows["object"] == "list"  # type: ignore[index]
    assert rows["data"] and all(r["project_id"] == project for r in rows["data"])  # type: ignore[index]
    cli_rows = inference_cli("usage", "--project", project)
    assert sorted(map(str, rows["data"])) == sorted(map(str, cli_rows))  # type: ignore[index]


def test_the_requests_user_is_kept_on_the_usage_record(base_url: str, admin_key: str) -> None:
    project = inference_cli("projects", "create", "per-user")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisFullAccess",
                        "--project", project)
    client = make_client(base_url, key["secret_key"], project)
    chat = client.chat.completions.create(model=CHAT_MODEL, messages=STORY, max_tokens=4,
                                          user="alice")
    embed = client.embeddings.create(model=EMBED_MODEL, input="counted", user="bob")
    anonymous = client.embeddings.create(model=EMBED_MODEL, input="counted too")
    assert chat.usage is not None
    want = {
        (CHAT_MODEL, "alice"): (1, chat.usage.prompt_tokens, chat.usage.completion_tokens),
        (EMBED_MODEL, "bob"): (1, embed.usage.prompt_tokens, 0),
        (EMBED_MODEL, None): (1, anonymous.usage.prompt_tokens, 0),
    }

    def by_user(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], tuple[int, ...]]:
        return {(r["model"], r["user"]): (r["requests"], r["prompt_tokens"],
                                          r["completion_tokens"]) for r in rows}

    deadline = time.monotonic() + 15
    cli_rows = inference_cli("usage", "--project", project)
    while by_user(cli_rows) != want and time.monotonic() < deadline:
        time.sleep(0.5)
        cli_rows = inference_cli("usage", "--project", project)
    assert by_user(cli_rows) == want
    route_rows = client.get("/usage", cast_to=object)["data"]  # type: ignore[index]
    assert by_user(route_rows) == want


def test_abandoned_stream_is_metered_until_the_cut(base_url: str, admin_key: str) -> None:
    project = inference_cli("projects", "create", "abandoned")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                        "--project", project)
    client = make_client(base_url, key["secret_key"], project)
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=STORY, max_tokens=400,
                                            temperature=0, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = inference_cli("usage", "--project", project)
    assert len(rows) == 1 and rows[0]["requests"] == 1
    assert 0 < rows[0]["completion_tokens"] < 400


def test_a_whole_reply_dropped_by_its_client_is_metered_with_what_was_generated(
        base_url: str) -> None:
    project = inference_cli("projects", "create", "dropped")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                        "--project", project)
    client = make_client(base_url, key["secret_key"], project)
    prompt = client.chat.completions.create(model=CHAT_MODEL, messages=STORY, max_tokens=1)
    assert prompt.usage is not None
    dropping = make_client(base_url, key["secret_key"], project).with_options(timeout=1.5)
    with pytest.raises(openai.APITimeoutError):  # the client gives up and goes
        dropping.chat.completions.create(model=CHAT_MODEL, messages=STORY, n=8,
                                         max_tokens=1000, temperature=1)
    deadline = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while sum(r["requests"] for r in rows) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = inference_cli("usage", "--project", project)
    assert sum(r["requests"] for r in rows) == 2
    assert sum(r["prompt_tokens"] for r in rows) == 2 * prompt.usage.prompt_tokens
    dropped = sum(r["completion_tokens"] for r in rows) - 1
    # What the engine generated in its time, not nothing (the quota's reservation settles
    # to the same: tests/app/test_accounting.py).
    assert 0 < dropped < 8 * 1000


def test_ledger_survives_a_restart_of_the_control_plane(base_url: str,
                                                        tenants: dict[str, Any]) -> None:
    import ray

    project, key = tenants["keys"][2]
    client = make_client(base_url, key["secret_key"], project)
    earlier = ledger(project)
    first = client.embeddings.create(model=EMBED_MODEL, input="before the restart")
    before = earlier.copy()
    before[(key["id"], EMBED_MODEL, "requests")] += 1
    before[(key["id"], EMBED_MODEL, "prompt_tokens")] += first.usage.prompt_tokens
    assert wait_for_ledger(project, before) == before  # the meter's next flush
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if "ControlPlane" in a["name"]]
    assert names
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    reply = client.embeddings.create(model=EMBED_MODEL, input="after the restart")
    want = before.copy()
    want[(key["id"], EMBED_MODEL, "requests")] += 1
    want[(key["id"], EMBED_MODEL, "prompt_tokens")] += reply.usage.prompt_tokens
    assert wait_for_ledger(project, want, seconds=60) == want


def test_no_secret_or_hash_in_any_log(tenants: dict[str, Any], admin_key: str) -> None:
    secrets = [admin_key] + [k["secret_key"] for _, k in tenants["keys"]]
    needles = secrets + [hash_secret(s) for s in secrets]
    files = glob.glob("/tmp/ray/session_latest/logs/**/*", recursive=True)
    assert files
    for path in files:
        try:
            text = open(path, errors="replace").read()  # noqa: SIM115
        except (IsADirectoryError, PermissionError):
            continue
        for needle in needles:
            assert needle not in text, f"a key or its hash is in {path}"
