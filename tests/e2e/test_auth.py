"""Keys, permission sets and projects on the live app, through the official client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, inference_cli, make_client

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

SETS = ["GenerativeApisModelAccess", "GenerativeApisFullAccess", "AllProductsFullAccess"]
ROUTES: dict[str, Callable[[openai.OpenAI], Any]] = {
    "chat": lambda c: c.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1),
    "embeddings": lambda c: c.embeddings.create(model=EMBED_MODEL, input="hi"),
    "models": lambda c: list(c.models.list()),
    "model": lambda c: c.models.retrieve(EMBED_MODEL),
    "usage": lambda c: c.get("/usage", cast_to=object),
}
STATUS_ERRORS = {401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
                 404: openai.NotFoundError}


@pytest.fixture(scope="module")
def world(admin_key: str) -> dict[str, Any]:
    own = inference_cli("projects", "create", "own")["id"]
    other = inference_cli("projects", "create", "other")["id"]
    default = next(p["id"] for p in inference_cli("projects", "list") if p["default"])
    keys = {s: inference_cli("keys", "create", "--permission-set", s, "--project", own)
            for s in SETS}
    org = inference_cli("keys", "create", "--permission-set", "AllProductsFullAccess",
                        "--organization", "--name", "org")
    return {"projects": {"own": own, "other": other, "default": default,
                         "unknown": str(uuid.uuid4())},
            "keys": keys, "org": org}


def expected(permission_set: str, where: str, route: str, org: bool = False) -> int:
    if where == "unknown":
        return 404 if org else 403
    if where != "own" and not org:
        return 403
    if route == "usage" and permission_set == "GenerativeApisModelAccess":
        return 403
    return 200


def check(client: openai.OpenAI, route: str, status: int) -> None:
    if status == 200:
        ROUTES[route](client)
        return
    with pytest.raises(STATUS_ERRORS[status]) as info:
        ROUTES[route](client)
    assert info.value.status_code == status


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("where", ["own", "other", "default", "unknown"])
@pytest.mark.parametrize("permission_set", SETS)
def test_permission_matrix(base_url: str, world: dict[str, Any], permission_set: str,
                           where: str, route: str) -> None:
    key = world["keys"][permission_set]["secret_key"]
    project = world["projects"][where]
    check(make_client(base_url, key, project), route, expected(permission_set, where, route))
    if where == "default":  # /v1 without a project is the default project
        check(make_client(base_url, key), route, expected(permission_set, where, route))


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("where", ["own", "other", "default", "unknown"])
def test_organization_key_sees_every_project(base_url: str, world: dict[str, Any],
                                             where: str, route: str) -> None:
    client = make_client(base_url, world["org"]["secret_key"], world["projects"][where])
    check(client, route, expected("AllProductsFullAccess", where, route, org=True))


def test_malformed_project_id_is_403_or_404(base_url: str, world: dict[str, Any]) -> None:
    check(make_client(base_url, world["keys"][SETS[0]]["secret_key"], "not-a-uuid"), "models",
          403)
    check(make_client(base_url, world["org"]["secret_key"], "not-a-uuid"), "models", 404)


@pytest.mark.parametrize("route", ["chat", "models", "usage"])
def test_unknown_key_is_401(base_url: str, route: str) -> None:
    check(make_client(base_url, "sk-not-a-real-key"), route, 401)


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Basic abc", "Bearer a b", "sk-raw-key",
                      "Bearer \u00e9t\u00e9"],
)
def test_missing_or_malformed_header_is_401_with_challenge(base_url: str,
                                                           authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = httpx.get(f"{base_url}/v1/models", headers={
        k: v.encode() for k, v in headers.items()})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    err = resp.json()["error"]
    assert err["type"] == "authentication_error"
    secret = (authorization or "").removeprefix("Bearer").strip()
    if len(secret) >= 3:
        assert secret not in err["message"]


def test_a_project_key_works_only_in_its_project(base_url: str, world: dict[str, Any]) -> None:
    key = world["keys"]["GenerativeApisModelAccess"]["secret_key"]
    own = make_client(base_url, key, world["projects"]["own"])
    reply = own.chat.completions.create(model=CHAT_MODEL, max_tokens=3,
                                        messages=[{"role": "user", "content": "hello"}])
    assert reply.usage is not None
    with pytest.raises(openai.PermissionDeniedError):
        make_client(base_url, key).chat.completions.create(
            model=CHAT_MODEL, max_tokens=3, messages=[{"role": "user", "content": "hello"}])


def test_revoked_key_stops_working_within_seconds(base_url: str, world: dict[str, Any]) -> None:
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                        "--project", world["projects"]["own"], "--name", "to-revoke")
    client = make_client(base_url, key["secret_key"], world["projects"]["own"])
    client.models.list()
    assert inference_cli("keys", "revoke", key["id"])["revoked"] is True
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.models.list()
        except openai.AuthenticationError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("a revoked key still works after 10 s")
    listed = inference_cli("keys", "list", "--project", world["projects"]["own"])
    assert all("secret_key" not in k for k in listed)
    assert next(k for k in listed if k["id"] == key["id"])["revoked"] is True


def test_edge_answers_hold_behind_serves_proxy(base_url: str, admin_key: str) -> None:
    """What the in-process tests hold, through the proxy a client really meets: no redirect
    to the host the client named, the key checked before a path is said to be unknown, 405
    with Allow, and two Authorization headers refused."""
    key = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base_url, timeout=30, follow_redirects=False) as http:
        slash = http.post("/v1/chat/completions/", headers={**key, "host": "attacker.example"},
                          json={"model": CHAT_MODEL, "messages": []})
        assert slash.status_code == 404 and "location" not in slash.headers
        assert http.get("/v1/nothing").status_code == 401
        assert http.get("/v1/nothing", headers=key).status_code == 404
        wrong = http.get("/v1/chat/completions", headers=key)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        twice = http.get("/v1/models", headers=[("authorization", f"Bearer {admin_key}"),
                                                ("authorization", "Bearer sk-other")])
        assert twice.status_code == 401
