"""`nerflow approve` / `nerflow reject`: a person's decision on a version the gate accepted in approval mode.

A pipeline run with `promote.mode: approval` ends with the version tagged `awaiting approval` (docs/promotion.md).
`approve` moves the alias (default champion) and records the move, the MLflow-authenticated user as its actor, in
the alias's history; `reject` tags the version and moves nothing. Either refuses (exit 4) a version that is not
awaiting approval; on a team server an account that may not move the alias is refused by MLflow (exit 4, one line).
"""
from __future__ import annotations

import argparse
import json

from nerflow.config import ConfigError


def _reason(args: argparse.Namespace) -> str:
    if not (args.reason or "").strip():
        raise ConfigError(f"{args.command} needs --reason TEXT: the decision records why")
    return args.reason.strip()


def cmd_approve(args: argparse.Namespace) -> int:
    from nerflow.prefect_tasks import approval, champion, tracking

    client, reason = tracking.configure(), _reason(args)
    actor = champion.actor_name()   # the MLflow user when the server authenticates: who approved is not typed
    entry = approval.approve(client, args.name, args.version, args.alias, actor, reason)
    said = {"approved": True, "moved": True, "name": args.name, "version": entry.to_version, "alias": args.alias,
            "entry": entry.__dict__ | {"evidence": entry.evidence.__dict__}}
    print(json.dumps(said, indent=1) if args.json else
          f"approved: @{args.alias} of {args.name} moved from version {entry.from_version or '-'} to "
          f"{entry.to_version} by {actor}: {reason}")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    from nerflow.prefect_tasks import approval, champion, tracking

    client, reason = tracking.configure(), _reason(args)
    actor = champion.actor_name()
    approval.reject(client, args.name, args.version, args.alias, actor, reason)
    said = {"rejected": True, "moved": False, "name": args.name, "version": str(args.version), "alias": args.alias,
            "actor": actor, "reason": reason}
    print(json.dumps(said, indent=1) if args.json else
          f"rejected: {args.name} version {args.version} by {actor}: {reason} (@{args.alias} not moved)")
    return 0


def add_parsers(sub) -> None:
    for verb, func, what in (("approve", cmd_approve, "move @champion to a version awaiting approval"),
                             ("reject", cmd_reject, "refuse a version awaiting approval (nothing moves)")):
        p = sub.add_parser(verb, help=what)
        p.add_argument("name")
        p.add_argument("version")
        p.add_argument("--reason", help="why (required): recorded with the decision")
        p.add_argument("--alias", default="champion")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
