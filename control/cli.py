"""``inference``: the admin CLI for projects, API keys and usage.

It opens the same store as a service started from the same directory
(``INFERENCE_STATE_DIR``, default ``.inference/``). Every command takes ``--json`` and then
prints exactly one JSON document on stdout; without it, a readable table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from control.keys import PERMISSION_SETS
from control.store import Store, StoreError


def _day(text: str) -> str:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None
    return text


def _parser() -> argparse.ArgumentParser:
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print one JSON document")
    parser = argparse.ArgumentParser(prog="inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = parser.add_subparsers(dest="group", required=True)

    projects = groups.add_parser("projects", help="projects").add_subparsers(
        dest="command", required=True)
    create = projects.add_parser("create", parents=[json_flag], help="create a project")
    create.add_argument("name")
    projects.add_parser("list", parents=[json_flag], help="list projects")
    update = projects.add_parser("update", parents=[json_flag], help="set a project's quotas")
    update.add_argument("project_id")
    update.add_argument("--rpm", type=int, help="requests per minute; 0 = unlimited")
    update.add_argument("--tpm", type=int, help="tokens per minute; 0 = unlimited")

    keys = groups.add_parser("keys", help="API keys").add_subparsers(
        dest="command", required=True)
    kc = keys.add_parser("create", parents=[json_flag],
                         help="create a key; its secret is shown here only")
    kc.add_argument("--permission-set", action="append", required=True, choices=PERMISSION_SETS)
    scope = kc.add_mutually_exclusive_group(required=True)
    scope.add_argument("--project", action="append", metavar="ID")
    scope.add_argument("--organization", action="store_true",
                       help="grant the permission sets over every project")
    kc.add_argument("--name")
    kl = keys.add_parser("list", parents=[json_flag], help="list keys (never their secrets)")
    kl.add_argument("--project", metavar="ID")
    kr = keys.add_parser("revoke", parents=[json_flag], help="revoke a key")
    kr.add_argument("key_id")

    usage = groups.add_parser("usage", parents=[json_flag],
                              help="metered usage per project, key, model, day and user")
    usage.add_argument("--project", metavar="ID")
    usage.add_argument("--since", type=_day, metavar="YYYY-MM-DD")

    init = groups.add_parser(
        "init", parents=[json_flag],
        help="create the store; on first start, make a full-access key and print it once")
    init.add_argument("--config", type=Path, help="Serve config whose address to print")
    return parser


def _base_url(config: Path | None) -> str:
    host, port = "127.0.0.1", 8000
    if config is not None:
        http = (yaml.safe_load(config.read_text()) or {}).get("http_options") or {}
        host, port = http.get("host", host), http.get("port", port)
    return f"http://{host}:{port}/v1"


def _run(args: argparse.Namespace, store: Store) -> Any:
    if args.group == "projects":
        if args.command == "create":
            return store.create_project(args.name)
        if args.command == "update":
            return store.update_project(args.project_id, args.rpm, args.tpm)
        return store.list_projects()
    if args.group == "keys":
        if args.command == "create":
            projects = None if args.organization else args.project
            return store.create_key(args.permission_set, projects, args.name)
        if args.command == "list":
            return store.list_keys(args.project)
        return store.revoke_key(args.key_id)
    if args.group == "usage":
        return store.usage(args.project, args.since)
    # init
    result: dict[str, Any] = {"base_url": _base_url(args.config),
                              "state_dir": str(store.directory), "key": None}
    if not store.has_keys():
        result["key"] = store.create_key(
            ["GenerativeApisFullAccess"], [store.default_project_id()], "first-start")
    return result


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
    if isinstance(result, dict) and "secret_key" in result:
        table = _table([{k: v for k, v in result.items() if k != "secret_key"}])
        return f"{table}\n\nsecret_key: {result['secret_key']}\n(shown only once)"
    return _table(result if isinstance(result, list) else [result])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = _run(args, Store())
    except StoreError as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"inference: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else _plain(args, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
