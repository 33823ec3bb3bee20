"""The store's SQLite schema, and the migrations of stores made by earlier versions.

SQLite is the one database the store speaks (``control/store.py``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    rpm INTEGER NOT NULL DEFAULT 0,  -- requests per minute; 0 = unlimited
    tpm INTEGER NOT NULL DEFAULT 0,  -- tokens per minute; 0 = unlimited
    max_concurrent INTEGER NOT NULL DEFAULT 0  -- requests in flight; 0 = unlimited
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    expires_at INTEGER,   -- NULL: never
    last_used_at INTEGER  -- NULL: never used; written at most once a minute per replica
);
CREATE TABLE IF NOT EXISTS key_grants (
    key_id TEXT NOT NULL REFERENCES api_keys(id),
    permission_set TEXT NOT NULL,
    project_id TEXT  -- NULL: the whole organisation
);
CREATE INDEX IF NOT EXISTS key_grants_by_key ON key_grants (key_id);
-- Every change to projects and keys: who (a key id, or 'local' for the CLI on the store),
-- what, on which target, when, from where. Never a secret or a hash. ``projects`` lists the
-- projects the change concerns, comma-separated with a comma at each end (",a,b,"), so an
-- entry is found by project with one LIKE; empty for a change to the whole organisation.
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    actor_key_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    client_address TEXT,
    projects TEXT NOT NULL DEFAULT ''
);
-- Stored responses of the Responses API, per project (docs/api.md, "Responses"): the
-- response object and the input items it was made from, as JSON; the previous response's
-- id chains a conversation. Rows past expires_at are never read and are deleted at the next
-- write of a response.
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    previous_response_id TEXT,
    response TEXT NOT NULL,
    input_items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires_at);
"""
# The ledger: one row per project, key, model, day, user ('' when requests named none) and
# route (the route's path, e.g. /v1/responses; '' for rows metered before routes were).
_USAGE_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    project_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    user TEXT NOT NULL DEFAULT '',
    audio_seconds REAL NOT NULL DEFAULT 0,  -- seconds of audio transcribed
    route TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (project_id, key_id, model, day, user, route)
)"""
_SCHEMA += _USAGE_TABLE.format(name="usage") + ";\n"


def migrate_usage(db: sqlite3.Connection) -> None:
    """Give a ledger made before ``user`` was metered a ``user`` column. The column is part
    of the primary key (one key's requests for two users stay two rows), and SQLite cannot
    change a primary key in place, so the table is rebuilt with its rows, which get no user.
    Runs inside the caller's write transaction; a no-op once done."""
    if "user" in {row[1] for row in db.execute("PRAGMA table_info(usage)")}:
        return
    columns = "project_id, key_id, model, day, requests, prompt_tokens, completion_tokens"
    db.execute(_USAGE_TABLE.format(name="usage_with_user"))
    db.execute(f"INSERT INTO usage_with_user ({columns}) SELECT {columns} FROM usage")
    db.execute("DROP TABLE usage")
    db.execute("ALTER TABLE usage_with_user RENAME TO usage")


def migrate_audio_seconds(db: sqlite3.Connection) -> None:
    """Give a ledger made before transcriptions were metered its ``audio_seconds`` column
    (0 for the rows it already has). Runs inside the caller's write transaction, after
    :func:`migrate_usage`; a no-op once done."""
    if "audio_seconds" not in {row[1] for row in db.execute("PRAGMA table_info(usage)")}:
        db.execute("ALTER TABLE usage ADD COLUMN audio_seconds REAL NOT NULL DEFAULT 0")


def migrate_route(db: sqlite3.Connection) -> None:
    """Give a ledger made before the route was metered its ``route`` column, part of the
    primary key (so the table is rebuilt, as in :func:`migrate_usage`); its rows get ''.
    Runs inside the caller's write transaction, after :func:`migrate_audio_seconds`; a no-op
    once done."""
    if "route" in {row[1] for row in db.execute("PRAGMA table_info(usage)")}:
        return
    columns = ("project_id, key_id, model, day, requests, prompt_tokens, completion_tokens, "
               "user, audio_seconds")
    db.execute(_USAGE_TABLE.format(name="usage_with_route"))
    db.execute(f"INSERT INTO usage_with_route ({columns}) SELECT {columns} FROM usage")
    db.execute("DROP TABLE usage")
    db.execute("ALTER TABLE usage_with_route RENAME TO usage")


def prepare(path: Path) -> None:
    """Create the tables a new store needs and bring an older store's up to date."""
    schema = sqlite3.connect(path, timeout=30)
    try:
        schema.execute("PRAGMA journal_mode=WAL")
        schema.executescript(_SCHEMA)  # commits by itself: outside any other transaction
        _add_columns(schema, "projects", {  # stores made before these quotas existed
            "rpm": "INTEGER NOT NULL DEFAULT 0",
            "tpm": "INTEGER NOT NULL DEFAULT 0",
            "max_concurrent": "INTEGER NOT NULL DEFAULT 0",
        })
        _add_columns(schema, "api_keys", {  # stores made before keys could expire
            "expires_at": "INTEGER",
            "last_used_at": "INTEGER",
        })
    finally:
        schema.close()


def _add_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Add each of ``columns`` (name: declaration) that ``table`` lacks; a no-op once done."""
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, declaration in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
