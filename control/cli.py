"""``inference``: the admin CLI for projects, API keys, usage and the audit log.

Given a service's URL and a key (``--base-url``/``--api-key``, or ``INFERENCE_BASE_URL`` /
``INFERENCE_API_KEY``) it manages that service over its HTTP API, from any machine. Without
them it opens the same store as a service started from the same directory
(``INFERENCE_STATE_DIR``, default ``.inference/``). Every command takes ``--json`` and then
prints exactly one JSON document on stdout, the same either way; without it, a readable table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from control.keys import PERMISSION_SETS
from control.remote import RemoteError, RemoteService
from control.store import Store, StoreError

DEFAULT_AUDIT_LIMIT = 20


def _day(text: str) -> str:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None
    return text


def _moment(text: str) -> str:
    """An ISO 8601 date and time (UTC when it names no time zone), kept as written."""
    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date and time, e.g. 2030-01-31T12:00:00Z") from None
    return text


def unix_time(text: str) -> int:
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp())


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")
    common.add_argument("--base-url", default=os.environ.get("INFERENCE_BASE_URL"),
                        help="manage the service at this URL (env INFERENCE_BASE_URL) "
                             "instead of the local store")
    common.add_argument("--api-key", default=os.environ.get("INFERENCE_API_KEY"),
                        help="the key to manage it with (env INFERENCE_API_KEY)")
    parser = argparse.ArgumentParser(prog="inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = parser.add_subparsers(dest="group", required=True)

    def quotas(command: argparse.ArgumentParser) -> None:
        command.add_argument("--rpm", type=int, help="requests per minute; 0 = unlimited")
        command.add_argument("--tpm", type=int, help="tokens per minute; 0 = unlimited")
        command.add_argument("--max-concurrent", type=int,
                             help="requests in flight at once; 0 = unlimited")

    projects = groups.add_parser("projects", help="projects").add_subparsers(
        dest="command", required=True)
    create = projects.add_parser("create", parents=[common], help="create a project")
    create.add_argument("name")
    quotas(create)
    projects.add_parser("list", parents=[common], help="list projects")
    update = projects.add_parser("update", parents=[common],
                                 help="rename a project or set its quotas")
    update.add_argument("project_id")
    update.add_argument("--name")
    quotas(update)
    delete = projects.add_parser("delete", parents=[common],
                                 help="delete a project (never the default one)")
    delete.add_argument("project_id")

    keys = groups.add_parser("keys", help="API keys").add_subparsers(
        dest="command", required=True)
    kc = keys.add_parser("create", parents=[common],
                         help="create a key; its secret is shown here only")
    kc.add_argument("--permission-set", action="append", required=True, choices=PERMISSION_SETS)
    scope = kc.add_mutually_exclusive_group(required=True)
    scope.add_argument("--project", action="append", metavar="ID")
    scope.add_argument("--organization", action="store_true",
                       help="grant the permission sets over every project")
    kc.add_argument("--name")
    kc.add_argument("--expires-at", type=_moment, metavar="ISO8601",
                    help="when the key stops working (UTC unless it says otherwise)")
    kl = keys.add_parser("list", parents=[common], help="list keys (never their secrets)")
    kl.add_argument("--project", metavar="ID")
    kr = keys.add_parser("revoke", parents=[common], help="revoke a key")
    kr.add_argument("key_id")

    usage = groups.add_parser("usage", parents=[common],
                              help="metered usage per project, key, model, day and user")
    usage.add_argument("--project", metavar="ID")
    usage.add_argument("--since", type=_day, metavar="YYYY-MM-DD")

    audit = groups.add_parser("audit", parents=[common],
                              help="changes to projects and keys, newest first")
    audit.add_argument("--project", metavar="ID")
    audit.add_argument("--limit", type=int, default=DEFAULT_AUDIT_LIMIT)
    audit.add_argument("--after", type=int, metavar="ENTRY_ID",
                       help="entries older than this one (the next page)")

    init = groups.add_parser(
        "init", parents=[common],
        help="create the store; on first start, make a full-access key and print it once")
    init.add_argument("--config", type=Path, help="Serve config whose address to print")
    return parser


def _base_url(config: Path | None) -> str:
    """Where the config's API listens: the ingress's own front, or Serve's proxy."""
    host, port = "127.0.0.1", 8000
    if config is not None:
        data = yaml.safe_load(config.read_text()) or {}
        apps = data.get("applications") or [{}]
        front = ((apps[0].get("args") or {}).get("ingress") or {}).get("http_front")
        http = front or data.get("http_options") or {}
        host, port = http.get("host", host), http.get("port", port)
    return f"http://{host}:{port}/v1"


def _quotas(args: argparse.Namespace) -> dict[str, int]:
    return {name: value for name in ("rpm", "tpm", "max_concurrent")
            if (value := getattr(args, name)) is not None}


def _run_local(args: argparse.Namespace, store: Store) -> Any:
    if args.group == "projects":
        if args.command == "create":
            return store.create_project(args.name, args.rpm or 0, args.tpm or 0,
                                        args.max_concurrent or 0)
        if args.command == "update":
            return store.update_project(args.project_id, args.rpm, args.tpm,
                                        args.max_concurrent, args.name)
        if args.command == "delete":
            return store.delete_project(args.project_id)
        return store.list_projects()
    if args.group == "keys":
        if args.command == "create":
            projects = None if args.organization else args.project
            expires = None if args.expires_at is None else unix_time(args.expires_at)
            return store.create_key(args.permission_set, projects, args.name, expires)
        if args.command == "list":
            return store.list_keys(args.project)
        return store.revoke_key(args.key_id)
    if args.group == "usage":
        return store.usage(args.project, args.since)
    if args.group == "audit":
        projects = None if args.project is None else [args.project]
        entries, more = store.audit(projects, args.limit, args.after)
        return {"object": "list", "data": entries, "has_more": more}
    # init
    result: dict[str, Any] = {"base_url": _base_url(args.config),
                              "state_dir": str(store.directory), "key": None}
    if not store.has_keys():
        result["key"] = store.create_key(
            ["GenerativeApisFullAccess"], [store.default_project_id()], "first-start")
    return result


def _run_remote(args: argparse.Namespace, service: RemoteService) -> Any:
    if args.group == "projects":
        if args.command == "create":
            return service.call("POST", "/v1/projects", {"name": args.name, **_quotas(args)})
        if args.command == "update":
            changes = {**({"name": args.name} if args.name is not None else {}),
                       **_quotas(args)}
            return service.call("PATCH", f"/v1/projects/{args.project_id}", changes)
        if args.command == "delete":
            return service.call("DELETE", f"/v1/projects/{args.project_id}")
        return service.call("GET", "/v1/projects")["data"]
    if args.group == "keys":
        if args.command == "create":
            body: dict[str, Any] = {"name": args.name, "permission_sets": args.permission_set,
                                    "expires_at": args.expires_at}
            if args.organization:
                body["organization"] = True
            else:
                body["projects"] = args.project
            return service.call("POST", "/v1/keys", body)
        if args.command == "list":
            return service.call("GET", "/v1/keys", project=args.project)["data"]
        return service.call("DELETE", f"/v1/keys/{args.key_id}")
    if args.group == "usage":
        query = {"since": args.since} if args.since else {}
        return service.call("GET", "/v1/usage", project=args.project, query=query)["data"]
    if args.group == "audit":
        query = {"limit": str(args.limit),
                 **({"after": str(args.after)} if args.after is not None else {})}
        page = service.call("GET", "/v1/audit", project=args.project, query=query)
        return {"object": "list", "data": page["data"], "has_more": page["has_more"]}
    raise RemoteError("'init' creates the local store: run it where the service runs")


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _plain(args: argparse.Namespace, result: Any) -> str:
    if args.group == "init":
        if result["key"] is None:
            return f"Serving on {result['base_url']} (API keys: `inference keys list`)."
        return (
            f"\nFirst start: a full-access key for the default project.\n"
            f"  Base URL: {result['base_url']}\n"
            f"  API key:  {result['key']['secret_key']}\n"
            f"Keep the key now: it is shown only once.\n"
        )
    if args.group == "audit":
        more = "\n(more: --after {})".format(result["data"][-1]["id"]) if result[
            "has_more"] else ""
        return _table(result["data"]) + more
    if isinstance(result, dict) and "secret_key" in result:
        table = _table([{k: v for k, v in result.items() if k != "secret_key"}])
        return f"{table}\n\nsecret_key: {result['secret_key']}\n(shown only once)"
    return _table(result if isinstance(result, list) else [result])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.base_url:
            with RemoteService(args.base_url, args.api_key) as service:
                result = _run_remote(args, service)
        else:
            result = _run_local(args, Store())
    except (StoreError, RemoteError) as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"inference: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else _plain(args, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
