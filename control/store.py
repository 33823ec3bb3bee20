"""The control plane's state: projects, API keys, the usage ledger, the audit log and the
Responses API's stored responses, in SQLite.

One file in ``INFERENCE_STATE_DIR`` (default ``.inference/`` where the service is started).
The control-plane deployment owns it while the service runs; the admin CLI opens the same
file, so both agree without any flag. WAL mode lets the two read and write side by side.

Keys are stored as SHA-256 of the secret (the secrets are 256-bit random, so a fast hash is
enough) and compared in constant time; the secret itself is returned once, at creation.

Writes take the database lock up front (``BEGIN IMMEDIATE``); reads use a deferred
transaction, which in WAL mode reads a snapshot without waiting for writers.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from control import schema
from control.keys import PERMISSION_SETS, SECRET_PREFIX, Grant, KeyRecord, hash_secret

DEFAULT_PROJECT_NAME = "default"


class StoreError(ValueError):
    """A request the store refuses (unknown project, bad permission set, ...), with the HTTP
    status the admin API answers it with and the field at fault, if one is."""

    def __init__(self, message: str, status: int = 400, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Actor:
    """Who makes a change, for the audit log: a key id, or "local" for the CLI on the store
    itself, and the client's address when the change came over HTTP."""

    key_id: str = "local"
    address: str | None = None


LOCAL = Actor()
QUOTAS = ("rpm", "tpm", "max_concurrent")


def state_dir() -> Path:
    return Path(os.environ.get("INFERENCE_STATE_DIR", ".inference")).resolve()


def _day(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime("%Y-%m-%d")


class Store:
    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else state_dir()
        # Key hashes, projects and the ledger: its owner's only (the database files inside
        # are created with the process's umask; the directory keeps everyone else out).
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self.path = self.directory / "control-plane.sqlite3"
        schema.prepare(self.path)  # outside _db's transaction: executescript commits
        with self._db() as db:
            schema.migrate_usage(db)
            schema.migrate_audio_seconds(db)
            schema.migrate_route(db)
            if db.execute("SELECT 1 FROM projects WHERE is_default = 1").fetchone() is None:
                db.execute(
                    "INSERT INTO projects (id, name, is_default, created_at) VALUES (?, ?, 1, ?)",
                    (str(uuid.uuid4()), DEFAULT_PROJECT_NAME, int(time.time())),
                )

    @contextmanager
    def _db(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: a write takes the lock at once (``BEGIN IMMEDIATE``), so it
        never fails half-way on a busy database; a read (``write=False``) is deferred and
        reads a snapshot without queueing behind writers."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA secure_delete=ON")  # see _forget
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # --- projects ------------------------------------------------------------------------

    def create_project(self, name: str, rpm: int = 0, tpm: int = 0, max_concurrent: int = 0,
                       *, actor: Actor = LOCAL) -> dict[str, Any]:
        _check_name(name)
        _check_quotas({"rpm": rpm, "tpm": tpm, "max_concurrent": max_concurrent})
        project_id = str(uuid.uuid4())
        with self._db() as db:
            db.execute(
                "INSERT INTO projects (id, name, is_default, created_at, rpm, tpm, "
                "max_concurrent) VALUES (?, ?, 0, ?, ?, ?, ?)",
                (project_id, name, int(time.time()), rpm, tpm, max_concurrent),
            )
            _audit(db, actor, "project.create", project_id, [project_id])
        return {"id": project_id, "name": name, "default": False, "rpm": rpm, "tpm": tpm,
                "max_concurrent": max_concurrent}

    def list_projects(self) -> list[dict[str, Any]]:
        with self._db(write=False) as db:
            rows = db.execute(
                f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY created_at, name"
            ).fetchall()
        return [_project(r) for r in rows]

    def update_project(self, project_id: str, rpm: int | None = None,
                       tpm: int | None = None, max_concurrent: int | None = None,
                       name: str | None = None, *, actor: Actor = LOCAL) -> dict[str, Any]:
        """Set a project's name or quotas; None leaves one as it is, 0 makes a quota
        unlimited."""
        if name is not None:
            _check_name(name)
        _check_quotas({"rpm": rpm, "tpm": tpm, "max_concurrent": max_concurrent})
        with self._db() as db:
            changed = db.execute(
                "UPDATE projects SET rpm = COALESCE(?, rpm), tpm = COALESCE(?, tpm), "
                "max_concurrent = COALESCE(?, max_concurrent), name = COALESCE(?, name) "
                "WHERE id = ?", (rpm, tpm, max_concurrent, name, project_id)).rowcount
            if not changed:
                raise StoreError(f"unknown project {project_id!r}", 404, code="project_not_found")
            fields = [f for f, v in (("name", name), ("rpm", rpm), ("tpm", tpm),
                                     ("max_concurrent", max_concurrent)) if v is not None]
            _audit(db, actor, "project.update", project_id, [project_id], fields)
            row = db.execute(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = ?",
                             (project_id,)).fetchone()
        return _project(row)

    def delete_project(self, project_id: str, *, actor: Actor = LOCAL) -> dict[str, Any]:
        """Delete a project: its grants go with it, and a key left with no grant is revoked.
        Its metered usage stays in the ledger. The default project is never deleted
        (``/v1/...`` must always have somewhere to go)."""
        with self._db() as db:
            row = db.execute(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = ?",
                             (project_id,)).fetchone()
            if row is None:
                raise StoreError(f"unknown project {project_id!r}", 404, code="project_not_found")
            if row[2]:
                raise StoreError("the default project cannot be deleted: requests to /v1/... "
                                 "go to it", 409, code="default_project")
            keys = [r[0] for r in db.execute(
                "SELECT DISTINCT key_id FROM key_grants WHERE project_id = ?", (project_id,))]
            db.execute("DELETE FROM key_grants WHERE project_id = ?", (project_id,))
            now = int(time.time())
            for key_id in keys:
                if db.execute("SELECT 1 FROM key_grants WHERE key_id = ?",
                              (key_id,)).fetchone() is None and db.execute(
                        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                        (now, key_id)).rowcount:
                    _audit(db, actor, "key.revoke", key_id, [project_id])
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))
            _audit(db, actor, "project.delete", project_id, [project_id])
        return {**_project(row), "deleted": True}

    def max_concurrent(self, project_id: str) -> int:
        """A project's limit of requests in flight; 0, unlimited, for an unknown project."""
        with self._db(write=False) as db:
            row = db.execute("SELECT max_concurrent FROM projects WHERE id = ?",
                             (project_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def project_limits(self, project_id: str) -> tuple[int, int]:
        """A project's (rpm, tpm); (0, 0), unlimited, for an unknown project."""
        with self._db(write=False) as db:
            row = db.execute("SELECT rpm, tpm FROM projects WHERE id = ?",
                             (project_id,)).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def project(self, project_id: str) -> dict[str, Any] | None:
        with self._db(write=False) as db:
            row = db.execute(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = ?",
                             (project_id,)).fetchone()
        return None if row is None else _project(row)

    def default_project_id(self) -> str:
        with self._db(write=False) as db:
            row = db.execute("SELECT id FROM projects WHERE is_default = 1").fetchone()
        return str(row[0])

    # --- keys ----------------------------------------------------------------------------

    def create_key(
        self,
        permission_sets: list[str],
        projects: list[str] | None,
        name: str | None = None,
        expires_at: int | None = None,
        *,
        actor: Actor = LOCAL,
    ) -> dict[str, Any]:
        """``projects`` None grants the sets over the whole organisation; ``expires_at``
        (unix seconds, in the future) ends the key then."""
        if expires_at is not None and expires_at <= time.time():
            raise StoreError("expires_at must be in the future", param="expires_at")
        if not permission_sets:
            raise StoreError("a key needs at least one permission set")
        unknown = [s for s in permission_sets if s not in PERMISSION_SETS]
        if unknown:
            raise StoreError(f"unknown permission set(s) {unknown}; known: {list(PERMISSION_SETS)}")
        if projects is not None and not projects:
            raise StoreError("give at least one project, or the whole organisation")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        scopes: list[str | None] = list(dict.fromkeys(projects)) if projects else [None]
        with self._db() as db:
            if projects is not None:  # checked in the transaction that grants them
                named = list(dict.fromkeys(projects))
                known = {r[0] for r in db.execute(
                    f"SELECT id FROM projects WHERE id IN ({', '.join('?' * len(named))})",
                    named)}
                missing = [p for p in named if p not in known]
                if missing:
                    raise StoreError(f"unknown project(s) {missing}", param="projects")
            db.execute(
                "INSERT INTO api_keys (id, name, secret_hash, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (key_id, name, hash_secret(secret), int(time.time()), expires_at),
            )
            db.executemany(
                "INSERT INTO key_grants (key_id, permission_set, project_id) VALUES (?, ?, ?)",
                [(key_id, s, p) for s in dict.fromkeys(permission_sets) for p in scopes],
            )
            _audit(db, actor, "key.create", key_id, [p for p in scopes if p])
            record = _key(db, key_id)
        assert record is not None
        return {**record.public(), "secret_key": secret}

    def key_by_hash(self, digest: str) -> KeyRecord | None:
        """The unrevoked key whose secret hashes to ``digest`` (see :func:`hash_secret`), or
        None; the stored hash is compared in constant time. Callers send the hash, never the
        secret. An expired key is returned as it is: the caller refuses it, saying why
        (``KeyRecord.expired``).
        """
        with self._db(write=False) as db:
            row = db.execute(
                "SELECT id, secret_hash FROM api_keys WHERE secret_hash = ? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
            if row is None or not hmac.compare_digest(row[1], digest):
                return None
            return _key(db, row[0])

    def list_keys(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Every key (or those that reach ``project_id``, organisation-wide ones included),
        oldest first, with their grants: one query."""
        query = ("SELECT k.id, k.name, k.created_at, k.revoked_at, g.permission_set, "
                 "g.project_id, k.expires_at, k.last_used_at "
                 "FROM api_keys k LEFT JOIN key_grants g ON g.key_id = k.id")
        params: tuple[str, ...] = ()
        if project_id is not None:
            query += (" WHERE EXISTS (SELECT 1 FROM key_grants s WHERE s.key_id = k.id "
                      "AND (s.project_id IS NULL OR s.project_id = ?))")
            params = (project_id,)
        query += " ORDER BY k.created_at, k.id, g.rowid"
        with self._db(write=False) as db:
            rows = db.execute(query, params).fetchall()
        records = []
        for _, group in groupby(rows, key=lambda r: r[0]):
            grants = list(group)
            first = grants[0]
            records.append(KeyRecord(
                first[0], first[1], first[2], first[3] is not None,
                tuple(Grant(g[4], g[5]) for g in grants if g[4] is not None),
                first[6], first[7]))
        return [r.public() for r in records]

    def revoke_key(self, key_id: str, *, actor: Actor = LOCAL) -> dict[str, Any]:
        with self._db() as db:
            changed = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (int(time.time()), key_id),
            ).rowcount
            record = _key(db, key_id)
            if record is None:
                raise StoreError(f"unknown key {key_id!r}", 404, code="key_not_found")
            if changed:
                _audit(db, actor, "key.revoke", key_id,
                       [g.project_id for g in record.grants if g.project_id])
        return {**record.public(), "revoked_now": bool(changed)}

    def key(self, key_id: str) -> KeyRecord | None:
        """A key by its id (revoked or not), with its grants."""
        with self._db(write=False) as db:
            return _key(db, key_id)

    def touch_key(self, key_id: str, now: int | None = None) -> None:
        """Note that a key was used (callers do so at most once a minute per key)."""
        with self._db() as db:
            db.execute("UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) "
                       "WHERE id = ?", (int(time.time()) if now is None else now, key_id))

    # --- audit ---------------------------------------------------------------------------

    def audit(self, projects: list[str] | None = None, limit: int = 20,
              after: int | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Audit entries, newest first, and whether there are more: every entry, or those
        that concern one of ``projects``; ``after`` an entry id, the entries older than it."""
        query = ("SELECT id, time, actor_key_id, action, target, client_address FROM audit "
                 "WHERE 1 = 1")
        params: list[Any] = []
        if projects is not None:
            if not projects:
                return [], False
            query += " AND (" + " OR ".join("projects LIKE ?" for _ in projects) + ")"
            params += [f"%,{p},%" for p in projects]
        if after is not None:
            query += " AND id < ?"
            params.append(after)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit + 1)
        with self._db(write=False) as db:
            rows = db.execute(query, params).fetchall()
        names = ("id", "time", "actor_key_id", "action", "target", "client_address")
        return [dict(zip(names, r, strict=True)) for r in rows[:limit]], len(rows) > limit

    def has_keys(self) -> bool:
        with self._db(write=False) as db:
            return db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    # --- usage ---------------------------------------------------------------------------

    def add_usage(self, rows: list[dict[str, Any]]) -> None:
        """Add metered rows (``project_id, key_id, model, day, requests, prompt_tokens,
        completion_tokens``, ``user``, None or absent when the requests had none,
        ``audio_seconds``, absent for none, and ``route``, the route's path) to the ledger in
        one transaction."""
        with self._db() as db:
            db.executemany(
                """INSERT INTO usage (project_id, key_id, model, day, user, requests,
                                      prompt_tokens, completion_tokens, audio_seconds, route)
                   VALUES (:project_id, :key_id, :model, :day, :user, :requests,
                           :prompt_tokens, :completion_tokens, :audio_seconds, :route)
                   ON CONFLICT (project_id, key_id, model, day, user, route) DO UPDATE SET
                     requests = requests + excluded.requests,
                     prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                     completion_tokens = completion_tokens + excluded.completion_tokens,
                     audio_seconds = audio_seconds + excluded.audio_seconds""",
                [{**row, "user": row.get("user") or "", "route": row.get("route") or "",
                  "audio_seconds": row.get("audio_seconds") or 0.0} for row in rows],
            )

    def usage(self, project_id: str | None = None, since: str | None = None
              ) -> list[dict[str, Any]]:
        """Ledger rows, one per project, key, model, day, user (None: requests that named
        no user) and route (None: metered before routes were), oldest day first."""
        query = ("SELECT project_id, key_id, model, day, NULLIF(user, ''), requests, "
                 "prompt_tokens, completion_tokens, ROUND(audio_seconds, 3), "
                 "NULLIF(route, '') FROM usage WHERE 1 = 1")
        params: list[str] = []
        if project_id is not None:
            query += " AND project_id = ?"
            params.append(project_id)
        if since is not None:
            query += " AND day >= ?"
            params.append(since)
        query += " ORDER BY day, project_id, key_id, model, user, route"
        with self._db(write=False) as db:
            rows = db.execute(query, params).fetchall()
        names = ("project_id", "key_id", "model", "day", "user", "requests", "prompt_tokens",
                 "completion_tokens", "audio_seconds", "route")
        return [dict(zip(names, r, strict=True)) for r in rows]


    # --- stored responses (the Responses API) ------------------------------------------

    def store_response(self, project_id: str, record: dict[str, Any],
                       now: int | None = None) -> None:
        """Keep a response (``record``: ``id``, ``created_at``, ``expires_at``,
        ``previous_response_id``, ``response`` and ``input_items`` as JSON text), and delete
        the responses whose time is up."""
        now = int(time.time()) if now is None else now
        with self._db() as db:
            db.execute(
                "INSERT INTO responses (id, project_id, created_at, expires_at, "
                "previous_response_id, response, input_items) VALUES (:id, :project_id, "
                ":created_at, :expires_at, :previous_response_id, :response, :input_items)",
                {**record, "project_id": project_id})
            expired = db.execute("DELETE FROM responses WHERE expires_at <= ?", (now,)).rowcount
        if expired:
            self._forget()

    def stored_response(self, project_id: str, response_id: str, now: int | None = None
                        ) -> tuple[str, str] | None:
        """A live response of the project: its response JSON and its input items JSON."""
        now = int(time.time()) if now is None else now
        with self._db(write=False) as db:
            row = db.execute(
                "SELECT response, input_items FROM responses WHERE id = ? AND project_id = ? "
                "AND expires_at > ?", (response_id, project_id, now)).fetchone()
        return None if row is None else (row[0], row[1])

    def conversation(self, project_id: str, response_id: str, now: int | None = None
                     ) -> list[tuple[str, str]] | None:
        """The conversation that ends with a live response of the project, oldest first:
        each response's input items JSON and its response JSON, following
        ``previous_response_id`` in one query. None when the response is not there; a
        chain cut by a deleted or expired response ends where it is cut."""
        now = int(time.time()) if now is None else now
        with self._db(write=False) as db:
            rows = db.execute(
                """WITH RECURSIVE chain(id, previous, depth) AS (
                     SELECT id, previous_response_id, 0 FROM responses
                     WHERE id = :id AND project_id = :project AND expires_at > :now
                     UNION ALL
                     SELECT r.id, r.previous_response_id, chain.depth + 1
                     FROM responses r JOIN chain ON r.id = chain.previous
                     WHERE r.project_id = :project AND r.expires_at > :now)
                   SELECT r.input_items, r.response FROM chain JOIN responses r
                   ON r.id = chain.id ORDER BY chain.depth DESC""",
                {"id": response_id, "project": project_id, "now": now}).fetchall()
        return [(row[0], row[1]) for row in rows] or None

    def delete_response(self, project_id: str, response_id: str) -> bool:
        """Delete a response of the project; False when it has none of that id."""
        with self._db() as db:
            deleted = db.execute("DELETE FROM responses WHERE id = ? AND project_id = ?",
                                 (response_id, project_id)).rowcount
        if deleted:
            self._forget()
        return bool(deleted)

    def _forget(self) -> None:
        """Deleted responses leave no copy in the files: ``secure_delete`` (set on every
        connection) zeroes the freed pages, and a checkpoint moves the zeroed pages into
        the database and empties the write-ahead log, which still held the old ones."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()


_PROJECT_COLUMNS = "id, name, is_default, rpm, tpm, max_concurrent"


def _project(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "default": bool(row[2]), "rpm": row[3], "tpm": row[4],
            "max_concurrent": row[5]}


def _check_name(name: str) -> None:
    if not name.strip():
        raise StoreError("a project needs a non-empty name", param="name")


def _check_quotas(quotas: dict[str, int | None]) -> None:
    for name, value in quotas.items():
        if value is not None and value < 0:
            raise StoreError(f"{name} must be 0 (unlimited) or more", param=name)


def _audit(db: sqlite3.Connection, actor: Actor, action: str, target: str,
           projects: list[str], fields: list[str] | None = None) -> None:
    """One audit entry, in the transaction of the change it records. ``fields`` names what an
    update set (never its values' secrets: there are none in a project)."""
    if fields:
        action += ":" + ",".join(fields)
    db.execute(
        "INSERT INTO audit (time, actor_key_id, action, target, client_address, projects) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (int(time.time()), actor.key_id, action, target, actor.address,
         "," + ",".join(dict.fromkeys(projects)) + "," if projects else ""),
    )


def _key(db: sqlite3.Connection, key_id: str) -> KeyRecord | None:
    """A key and its grants, read in the caller's transaction."""
    row = db.execute(
        "SELECT id, name, created_at, revoked_at, expires_at, last_used_at FROM api_keys "
        "WHERE id = ?", (key_id,)
    ).fetchone()
    if row is None:
        return None
    grants = db.execute(
        "SELECT permission_set, project_id FROM key_grants WHERE key_id = ? ORDER BY rowid",
        (key_id,),
    ).fetchall()
    return KeyRecord(row[0], row[1], row[2], row[3] is not None,
                     tuple(Grant(g[0], g[1]) for g in grants), row[4], row[5])


def today() -> str:
    return _day()
