"""`nerflow models`, `models history`, `promote`, `rollback`, `compare`: the registry, and every move of champion.

A promotion by hand runs the same gate as the pipeline's promote stage (tasks/champion.py) on the test data of a
config (or of the version's own resolved config); a rejection exits 4 ("refused"). `--force --reason` moves the
alias anyway and records that it did. Every move is an entry of the alias's history in the registry itself.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from nerflow.config import ConfigError


def _client():
    from nerflow.prefect_tasks import tracking

    return tracking.configure()


def _date(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "-"


def _emit(rows, as_json: bool, render) -> int:
    print(json.dumps(rows, indent=1, default=str) if as_json else render(rows))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    client = _client()
    words = args.words
    if not words:
        rows = [{"name": m.name, "aliases": {a: str(v) for a, v in (m.aliases or {}).items()},
                 "updated": _date(m.last_updated_timestamp)} for m in client.search_registered_models()]
        return _emit(rows, args.json, lambda rs: "\n".join(
            [f"{'model':<28} {'updated':<17} aliases"] + [f"{r['name']:<28} {r['updated']:<17} " + ", ".join(
                f"@{a}={v}" for a, v in sorted(r["aliases"].items())) for r in rs]))
    if words[0] == "history":
        if len(words) != 2:
            raise ConfigError("usage: nerflow models history NAME")
        return history(client, words[1], args.alias, args.json)
    if len(words) != 1:
        raise ConfigError("usage: nerflow models [NAME] | nerflow models history NAME")
    return versions(client, words[0], args.json)


def versions(client, name: str, as_json: bool) -> int:
    from nerflow.prefect_tasks import champion

    if not champion.model_exists(client, name):
        raise ConfigError(f"{name}: no registered model of that name (see `nerflow models`)")
    aliases = {}
    for alias, v in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for v in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version)):
        run = client.get_run(v.run_id) if v.run_id else None
        rows.append({"version": v.version, "aliases": sorted(aliases.get(str(v.version), [])),
                     "test_f1": run.data.metrics.get("test/f1") if run else None,
                     "data_hash": v.tags.get("data_hash", ""), "base_model": v.tags.get("base_model", ""),
                     "created": _date(v.creation_timestamp), "promotion": v.tags.get(champion.DECISION_TAG, "-"),
                     "rolled_back": v.tags.get(champion.ROLLED_BACK_TAG) == "true",
                     "reason": v.tags.get(champion.REASON_TAG, "")})
    return _emit(rows, as_json, lambda rs: "\n".join(
        [f"{'version':>7}  {'aliases':<22} {'test F1':>7}  {'data':<12} {'base model':<20} {'created':<17} promotion"]
        + [f"{r['version']:>7}  {','.join('@' + a for a in r['aliases']) or '-':<22} "
           f"{'-' if r['test_f1'] is None else format(r['test_f1'], '.4f'):>7}  {r['data_hash'][:12]:<12} "
           f"{r['base_model'][-20:]:<20} {r['created']:<17} {r['promotion']}"
           f"{' (rolled back)' if r['rolled_back'] else ''}" for r in rs]))


STATE_NOTES = {"abandoned": "  [interrupted before the alias moved: nothing happened]",
               "unreadable": "  [not a nerflow entry: skipped]"}


def history(client, name: str, alias: str, as_json: bool) -> int:
    from dataclasses import asdict

    from nerflow.prefect_tasks import champion

    if not champion.model_exists(client, name):
        raise ConfigError(f"{name}: no registered model of that name (see `nerflow models`)")
    with champion.promotion_lock(name, alias):   # reading repairs what an interrupted move left (settle_history)
        entries, _ = champion.settle_history(client, name, alias)
    rows = [asdict(e) for e in entries]
    return _emit(rows, as_json, lambda rs: "\n".join(
        [f"{'#':>3}  {'time':<25} {'action':<8} {'from':>4} -> {'to':<4} {'actor':<12} reason"]
        + [f"{r['seq']:>3}  {r['time']:<25} {r['action']:<8} {r['from_version'] or '-':>4} -> "
           f"{r['to_version'] or '-':<4} {r['actor'][:12]:<12} {r['reason']}{STATE_NOTES.get(r['state'], '')}"
           for r in rs]
        + ([f"@{alias} of {name} has no history yet"] if not rs else [])))


def test_data(client, name: str, version: str, config: Path | None, overrides: list[str]):
    """(config, test split path, gold labels, data passed validation, data hash) from CONFIG or the version's own
    config, read and checked by the config's task type."""
    import mlflow

    from nerflow import data_identity, task_types
    from nerflow.config import load_config

    resolved = config is None   # the version's own resolved config, logged by the nerflow that trained it
    if config is None:
        run_id = client.get_model_version(name, version).run_id
        tmp = tempfile.mkdtemp(prefix="nerflow-config-")
        config = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config/resolved.yaml",
                                                          dst_path=tmp))
    cfg = load_config(config, overrides, resolved=resolved)
    validate = task_types.entry(cfg.task, "validate")
    corpus = validate.load_corpus(cfg.data)   # an unreadable file is bad input here (DataError), as in `run`
    report = validate.validate_corpus(corpus, cfg.data)
    folder = Path(tempfile.mkdtemp(prefix="nerflow-test-"))
    validate.write_validated({"test": corpus["test"]}, cfg.data, folder)
    split = folder / "test.jsonl"
    promote = task_types.entry(cfg.task, "promote")
    return cfg, split, promote.gold(promote.examples(split)), report.passed, \
        data_identity.identity_digest(data_identity.identity(cfg.data))


def cmd_promote(args: argparse.Namespace) -> int:
    from nerflow import promotion
    from nerflow.prefect_tasks import champion
    from nerflow.prefect_tasks.promote import rules_of

    client, actor = _client(), champion.actor_name(args.actor)
    found = champion.check_version(client, args.name, args.version)
    version = str(found.version)
    if args.force:
        if not args.reason:
            raise ConfigError("--force needs --reason TEXT: a forced promotion records why")
        entry = champion.force(client, args.name, version, args.alias, actor, args.reason)
        return _emit({"moved": True, "forced": True, "entry": entry.__dict__ | {"evidence": entry.evidence.__dict__}},
                     args.json, lambda r: f"forced: @{args.alias} of {args.name} moved from version "
                                          f"{entry.from_version or '-'} to {version} by {actor}: {args.reason}")
    # the gate refuses a version of another task type too; asked here first, before the test data is read
    champion.check_alias_task(client, args.name, args.alias, champion.task_of(found))
    cfg, split, gold, passed, data_hash = test_data(client, args.name, version, args.config, args.overrides)
    decision = champion.gate(client, args.name, version, args.alias, rules_of(cfg), split, gold, passed, auto=True,
                             actor=actor, evidence={"test_data_hash": data_hash, "mlflow_run_id": None,
                                                    "prefect_flow_run_id": None}, task=cfg.task)
    out = promotion.decision_json(decision)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(promotion.comparison_markdown(decision))
    if not decision.accepted:
        raise promotion.Refused(f"{args.name} version {version} not promoted to @{args.alias}: {decision.reason}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from nerflow.prefect_tasks import champion

    client = _client()
    entry = champion.rollback(client, args.name, args.alias, champion.actor_name(args.actor), args.reason)
    return _emit({"from_version": entry.from_version, "to_version": entry.to_version, "seq": entry.seq}, args.json,
                 lambda r: f"rolled back: @{args.alias} of {args.name} moved from version {entry.from_version} "
                           f"to {entry.to_version} (version {entry.from_version} is marked rolled back)")


def cmd_compare(args: argparse.Namespace) -> int:
    from nerflow import task_types
    from nerflow.prefect_tasks import champion

    client = _client()
    found = [champion.check_version(client, args.name, v) for v in (args.v1, args.v2)]
    (v1, v2), task = [str(f.version) for f in found], champion.task_of(found[0])
    champion.check_version(client, args.name, v2, task)   # two versions of one task type
    kind, scorer = task_types.get(task), task_types.entry(task, "promote")
    _, split, gold, _, _ = test_data(client, args.name, v1, args.config, args.overrides)
    scored = champion.score_versions(args.name, [v1, v2], split, task)
    tables = {v: scorer.gate_tables(gold, scored, (v, None))[0] for v in (v1, v2)}
    hits = {v: scorer.hits(gold, scored[v]) for v in (v1, v2)}
    types = sorted(set(tables[v1]["per_type"]) | set(tables[v2]["per_type"]))
    rows = [{"type": t, **{f"v{v}_{k}": tables[v]["per_type"].get(t, {}).get(k) for v in (v1, v2)
                           for k in ("precision", "recall", "f1")},
             "support": (tables[v1]["per_type"].get(t) or tables[v2]["per_type"].get(t))["support"]} for t in types]
    result = {"versions": [v1, v2], "rows": rows, "f1": {v1: tables[v1]["f1"], v2: tables[v2]["f1"]},
              "only_found_by": {v1: len(hits[v1] - hits[v2]), v2: len(hits[v2] - hits[v1])},
              f"gold_{kind.hit_key}": scorer.gold_count(gold)}

    def render(r) -> str:
        f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
        lines = [f"{'type':<12} {'support':>7}  " + "  ".join(f"v{v} P/R/F1".ljust(22) for v in (v1, v2))]
        for row in rows:
            lines.append(f"{row['type']:<12} {int(row['support']):>7}  " + "  ".join(
                f"{f(row[f'v{v}_precision'])}/{f(row[f'v{v}_recall'])}/{f(row[f'v{v}_f1'])}".ljust(22)
                for v in (v1, v2)))
        lines.append(f"{'overall':<12} {r[f'gold_{kind.hit_key}']:>7}  " + "  ".join(
            f"F1 {f(r['f1'][v])}".ljust(22) for v in (v1, v2)))
        lines.append(f"gold {kind.hit_key} found only by version {v1}: {r['only_found_by'][v1]}; only by version "
                     f"{v2}: {r['only_found_by'][v2]}")
        return "\n".join(lines)

    return _emit(result, args.json, render)


def add_parsers(sub) -> None:
    models = sub.add_parser("models", help="registered models and aliases; `models NAME`; `models history NAME`")
    models.add_argument("words", nargs="*", metavar="NAME | history NAME")
    models.add_argument("--alias", default="champion", help="whose history (default champion)")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)
    promote = sub.add_parser("promote", help="move @champion to a version through the gate (or --force)")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("config", nargs="?", type=Path, help="test data and rules (default: the version's own)")
    promote.add_argument("overrides", nargs="*")
    promote.add_argument("--alias", default="champion")
    promote.add_argument("--force", action="store_true", help="move it whatever the gate says (needs --reason)")
    promote.add_argument("--reason")
    promote.add_argument("--actor", help="who (default: MLflow user, else the OS user)")
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(func=cmd_promote)
    rollback = sub.add_parser("rollback", help="put @champion back on the version before it")
    rollback.add_argument("name")
    rollback.add_argument("--alias", default="champion")
    rollback.add_argument("--actor")
    rollback.add_argument("--reason")
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(func=cmd_rollback)
    compare = sub.add_parser("compare", help="two versions side by side on a config's current test data")
    compare.add_argument("name")
    compare.add_argument("v1")
    compare.add_argument("v2")
    compare.add_argument("config", nargs="?", type=Path)
    compare.add_argument("overrides", nargs="*")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=cmd_compare)
