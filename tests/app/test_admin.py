"""The administration routes in-process, over the models' test double: what each permission
set may do on its own project and on another, the bodies' validation, and the audit log."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from control.deployment import AsyncStore
from control.keys import hash_secret
from control.store import Store
from tests.support.models_double import ModelsDoubleForTests

MODEL, FULL, ALL = ("GenerativeApisModelAccess", "GenerativeApisFullAccess",
                    "AllProductsFullAccess")


@dataclass
class World:
    store: Store
    client: TestClient
    own: str  # the project the scoped keys hold
    other: str
    secrets: dict[str, str]  # "model", "full", "all" (over own), "org" -> secret

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[who]}"}

    def key_in(self, project: str) -> str:
        made: str = self.store.create_key([MODEL], [project], "victim")["id"]
        return made


@pytest.fixture
def world(tmp_path: Path) -> World:
    store = Store(tmp_path)
    own, other = store.create_project("own")["id"], store.create_project("other")["id"]
    secrets = {name: store.create_key([sets], scope, name)["secret_key"]
               for name, sets, scope in (("model", MODEL, [own]), ("full", FULL, [own]),
                                         ("all", ALL, [own]), ("org", ALL, None))}
    app = build_api(ModelsDoubleForTests(), AsyncStore(store))
    return World(store, TestClient(app, raise_server_exceptions=False), own, other, secrets)


WHO = ("model", "full", "all", "org")


def _expect(allowed: set[str], who: str, ok: int = 200) -> int:
    return ok if who in allowed else 403


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("where", ["own", "other"])
def test_reading_a_project(world: World, who: str, where: str) -> None:
    project = getattr(world, where)
    got = world.client.get(f"/v1/projects/{project}", headers=world.as_(who))
    allowed = {"full", "all", "org"} if where == "own" else {"org"}
    assert got.status_code == _expect(allowed, who), got.text
    if got.status_code == 200:
        assert got.json()["id"] == project


@pytest.mark.parametrize("who", WHO)
def test_listing_projects_shows_those_the_key_manages(world: World, who: str) -> None:
    got = world.client.get("/v1/projects", headers=world.as_(who))
    if who == "model":
        assert got.status_code == 403 and got.json()["error"]["type"] == "permission_error"
        return
    ids = {p["id"] for p in got.json()["data"]}
    assert ids == ({world.own, world.other, world.store.default_project_id()}
                   if who == "org" else {world.own})


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("where", ["own", "other"])
def test_changing_and_deleting_a_project(world: World, who: str, where: str) -> None:
    project = getattr(world, where)
    allowed = {"all", "org"} if where == "own" else {"org"}
    changed = world.client.patch(f"/v1/projects/{project}", headers=world.as_(who),
                                 json={"rpm": 7, "max_concurrent": 2})
    assert changed.status_code == _expect(allowed, who), changed.text
    if changed.status_code == 200:
        assert changed.json()["rpm"] == 7 and changed.json()["max_concurrent"] == 2
    deleted = world.client.delete(f"/v1/projects/{project}", headers=world.as_(who))
    assert deleted.status_code == _expect(allowed, who), deleted.text
    assert (world.store.project(project) is None) == (deleted.status_code == 200)


@pytest.mark.parametrize("who", WHO)
def test_only_an_organisation_administrator_creates_projects(world: World, who: str) -> None:
    made = world.client.post("/v1/projects", headers=world.as_(who),
                             json={"name": "new", "tpm": 100})
    assert made.status_code == _expect({"org"}, who), made.text
    if made.status_code == 200:
        assert made.json()["tpm"] == 100 and world.store.project(made.json()["id"])


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("where", ["own", "other"])
def test_creating_and_revoking_keys(world: World, who: str, where: str) -> None:
    project = getattr(world, where)
    allowed = {"full", "all", "org"} if where == "own" else {"org"}
    made = world.client.post("/v1/keys", headers=world.as_(who),
                             json={"name": "ci", "permission_sets": [MODEL],
                                   "projects": [project]})
    assert made.status_code == _expect(allowed, who), made.text
    if made.status_code == 200:
        record = made.json()
        assert record["projects"] == [project] and record["secret_key"].startswith("sk-")
        assert world.store.key_by_hash(hash_secret(record["secret_key"])) is not None
    victim = world.key_in(project)
    revoked = world.client.delete(f"/v1/keys/{victim}", headers=world.as_(who))
    assert revoked.status_code == _expect(allowed, who), revoked.text
    listed = {k["id"]: k for k in world.store.list_keys()}
    assert listed[victim]["revoked"] == (revoked.status_code == 200)


@pytest.mark.parametrize("who", WHO)
def test_organisation_wide_keys_and_full_access_take_an_administrator(world: World,
                                                                      who: str) -> None:
    org = world.client.post("/v1/keys", headers=world.as_(who),
                            json={"permission_sets": [MODEL], "organization": True})
    assert org.status_code == _expect({"org"}, who), org.text
    admin = world.client.post("/v1/keys", headers=world.as_(who),
                              json={"permission_sets": [ALL], "projects": [world.own]})
    assert admin.status_code == _expect({"all", "org"}, who), admin.text


@pytest.mark.parametrize("who", WHO)
def test_key_listings_show_the_keys_of_managed_projects_and_never_a_secret(
        world: World, who: str) -> None:
    in_other = world.key_in(world.other)
    got = world.client.get("/v1/keys", headers=world.as_(who))
    if who == "model":
        assert got.status_code == 403
        return
    ids = {k["id"] for k in got.json()["data"]}
    assert (in_other in ids) == (who == "org")
    assert len(ids) == (5 if who == "org" else 3)  # others do not see the org-wide key
    text = got.text
    for secret in world.secrets.values():
        assert secret not in text and hash_secret(secret) not in text
    assert all("secret_key" not in k for k in got.json()["data"])


def test_under_a_project_path_listings_narrow_to_it(world: World) -> None:
    world.key_in(world.other)
    keys = world.client.get(f"/{world.own}/v1/keys", headers=world.as_("org")).json()["data"]
    assert all(k["organization"] or world.own in k["projects"] for k in keys)
    projects = world.client.get(f"/{world.own}/v1/projects", headers=world.as_("org"))
    assert [p["id"] for p in projects.json()["data"]] == [world.own]
    other = world.client.get(f"/{world.other}/v1/keys", headers=world.as_("full"))
    assert other.status_code == 403


def test_unknown_ids_are_404_only_for_a_key_that_sees_every_project(world: World) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    org = world.client.get(f"/v1/projects/{unknown}", headers=world.as_("org"))
    assert org.status_code == 404 and org.json()["error"]["code"] == "project_not_found"
    assert world.client.get(f"/v1/projects/{unknown}",
                            headers=world.as_("full")).status_code == 403
    assert world.client.delete("/v1/keys/key_nope", headers=world.as_("org")).status_code == 404
    assert world.client.delete("/v1/keys/key_nope",
                               headers=world.as_("full")).status_code == 403


def test_the_default_project_cannot_be_deleted(world: World) -> None:
    default = world.store.default_project_id()
    got = world.client.delete(f"/v1/projects/{default}", headers=world.as_("org"))
    assert got.status_code == 409
    assert got.json()["error"]["code"] == "default_project"
    assert world.store.project(default) is not None


@pytest.mark.parametrize(("body", "param"), [
    ({"name": "x", "permission_sets": [MODEL], "projects": ["p"], "colour": 1}, "colour"),
    ({"permission_sets": [MODEL]}, "projects"),
    ({"permission_sets": [MODEL], "projects": ["p"], "organization": True}, "projects"),
    ({"permission_sets": [], "organization": True}, "permission_sets"),
    ({"permission_sets": ["Root"], "organization": True}, "permission_sets[0]"),
    ({"permission_sets": [MODEL], "organization": "yes"}, "organization"),
    ({"permission_sets": [MODEL], "organization": True, "expires_at": "soon"}, "expires_at"),
    ({"permission_sets": [MODEL], "organization": True,
      "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
])
def test_key_bodies_are_validated_naming_the_field(world: World, body: dict[str, object],
                                                    param: str) -> None:
    got = world.client.post("/v1/keys", headers=world.as_("org"), json=body)
    assert got.status_code == 400, got.text
    assert got.json()["error"]["param"] == param


@pytest.mark.parametrize(("body", "param"), [
    ({"rpm": -1}, "rpm"), ({"tpm": "5"}, "tpm"), ({"name": ""}, "name"), ({"owner": 1}, "owner"),
])
def test_project_bodies_are_validated_naming_the_field(world: World, body: dict[str, object],
                                                        param: str) -> None:
    got = world.client.patch(f"/v1/projects/{world.own}", headers=world.as_("org"), json=body)
    assert got.status_code == 400, got.text
    assert got.json()["error"]["param"] == param


def test_null_is_absent_and_an_empty_change_is_refused(world: World) -> None:
    got = world.client.patch(f"/v1/projects/{world.own}", headers=world.as_("org"),
                             json={"rpm": 3, "tpm": None})
    assert got.status_code == 200 and got.json()["tpm"] == 0
    empty = world.client.patch(f"/v1/projects/{world.own}", headers=world.as_("org"), json={})
    assert empty.status_code == 400


def test_the_audit_log_records_changes_over_http_and_scopes_by_project(world: World) -> None:
    org = world.as_("org")
    world.client.patch(f"/v1/projects/{world.other}", headers=org, json={"tpm": 9})
    made = world.client.post("/v1/keys", headers=world.as_("full"),
                             json={"permission_sets": [MODEL], "projects": [world.own]}).json()
    world.client.delete(f"/v1/keys/{made['id']}", headers=world.as_("full"))
    everything = world.client.get("/v1/audit", headers=org).json()
    assert everything["object"] == "list"
    actions = [(e["action"], e["target"]) for e in everything["data"]]
    assert actions[:3] == [("key.revoke", made["id"]), ("key.create", made["id"]),
                           ("project.update:tpm", world.other)]
    full_id = world.store.key_by_hash(hash_secret(world.secrets["full"]))
    assert full_id is not None
    assert everything["data"][0]["actor_key_id"] == full_id.id
    assert everything["data"][0]["client_address"] == "testclient"
    assert made["secret_key"] not in json.dumps(everything)
    own = world.client.get("/v1/audit", headers=world.as_("full")).json()["data"]
    assert own and all(e["target"] != world.other for e in own)
    assert world.client.get("/v1/audit", headers=world.as_("model")).status_code == 403
    page = world.client.get("/v1/audit?limit=1", headers=org).json()
    assert page["has_more"] and len(page["data"]) == 1
    after = world.client.get(f"/v1/audit?limit=1&after={page['data'][0]['id']}",
                             headers=org).json()
    assert after["data"][0]["id"] < page["data"][0]["id"]
    bad = world.client.get("/v1/audit?limit=0", headers=org)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_an_expired_key_is_refused_and_listings_show_last_use(world: World) -> None:
    made = world.client.post("/v1/keys", headers=world.as_("org"), json={
        "permission_sets": [FULL], "projects": [world.own],
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))}).json()
    mine = {"Authorization": f"Bearer {made['secret_key']}"}
    assert world.client.get("/v1/keys", headers=mine).status_code == 200
    listed = {k["id"]: k for k in world.client.get("/v1/keys", headers=world.as_("org"))
              .json()["data"]}
    assert listed[made["id"]]["last_used_at"] is not None
    assert listed[made["id"]]["expires_at"] == made["expires_at"]
    time.sleep(max(0.0, made["expires_at"] - time.time()) + 0.1)
    refused = world.client.get("/v1/keys", headers=mine)
    assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]


def test_a_key_in_steady_use_stops_working_within_two_seconds_of_its_revocation(
        tmp_path: Path) -> None:
    """docs/api.md: a revoked key stops working on every ingress replica within 2 s. Here the
    key is in use all along, so the ingress keeps its record fresh in the background
    (app/control_plane_cache.py): that must not stretch the bound."""
    store = Store(tmp_path)
    made = store.create_key([MODEL], None, "steady")
    secret, key_id = made["secret_key"], made["id"]
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(build_api(ModelsDoubleForTests(), AsyncStore(store))) as client:
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # steady use: the record is kept fresh
            assert client.get("/v1/models", headers=headers).status_code == 200
            time.sleep(0.1)
        store.revoke_key(key_id)
        revoked = time.monotonic()
        answers = []
        while time.monotonic() - revoked < 3.0:
            sent = time.monotonic() - revoked
            answers.append((sent, client.get("/v1/models", headers=headers).status_code))
            time.sleep(0.1)
    assert all(status == 401 for sent, status in answers if sent >= 2.0), answers
