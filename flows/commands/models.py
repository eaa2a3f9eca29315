"""`nerflow models`, `models history`, `promote`, `rollback`, `compare`: the registry, and every move of champion.

A promotion by hand runs the same gate as the pipeline's promote stage (tasks/champion.py) on the test data of a
config (or of the version's own resolved config); a rejection exits 4 ("refused"). `--force --reason` moves the
alias anyway and records that it did. Every move is an entry of the alias's history in the registry itself.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
import tempfile
import time
from pathlib import Path

from nerflow.config import ConfigError
from nerflow.flows.tables import decision_text, render


def _client():
    from nerflow.prefect_tasks import tracking

    return tracking.configure()


def _date(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "-"


def _emit(rows, as_json: bool, render) -> int:
    print(json.dumps(rows, indent=1, default=str) if as_json else render(rows))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    words = args.words
    if words and words[0] == "history" and len(words) != 2:
        raise ConfigError("usage: nerflow models history NAME")
    if len(words) > 1 and words[0] != "history":
        raise ConfigError(_unknown_models_word(words[0]))
    from nerflow.prefect_tasks import mlflow_pages

    client = _client()
    if not words:   # every page: MLflow answers 100 models a page
        rows = [{"name": m.name, "aliases": {a: str(v) for a, v in (m.aliases or {}).items()},
                 "updated": _date(m.last_updated_timestamp)} for m in mlflow_pages.registered_models(client)]
        return _emit(rows, args.json, lambda rs: render(["model", "updated", "aliases"], [
            [r["name"], r["updated"], ", ".join(f"@{a}={v}" for a, v in sorted(r["aliases"].items()))] for r in rs]))
    if words[0] == "history":
        return history(client, words[1], args.alias, args.json)
    return versions(client, words[0], args.json)


def _unknown_models_word(word: str) -> str:
    """`models WORD NAME` with WORD not `history`: most likely a typo of it."""
    usage = "usage: nerflow models [NAME] | nerflow models history NAME"
    if difflib.get_close_matches(word, ["history"], n=1):
        return f"unknown command 'models {word}'; did you mean 'models history'? ({usage})"
    return usage


def versions(client, name: str, as_json: bool) -> int:
    """A bounded number of MLflow calls however many versions: the versions page by page, their runs' scores
    `mlflow_pages.IN_BATCH` runs a search (one `get_run` per version took minutes on a big registry)."""
    from mlflow.exceptions import MlflowException

    from nerflow.prefect_tasks import champion, mlflow_pages

    try:
        model = client.get_registered_model(name)
    except MlflowException:   # as champion.model_exists: a name the registry refuses is no model either
        typo = " (or did you mean 'models history NAME'?)" if difflib.get_close_matches(name, ["history"], n=1) else ""
        raise ConfigError(f"{name}: no registered model of that name (see `nerflow models`){typo}") from None
    aliases = {}
    for alias, v in (model.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    found = mlflow_pages.versions_of_models(client, [name])
    runs = mlflow_pages.runs_by_id(client, {v.run_id for v in found if v.run_id})
    rows = []
    for v in sorted(found, key=lambda v: -int(v.version)):
        run = runs.get(v.run_id)
        rows.append({"version": v.version, "aliases": sorted(aliases.get(str(v.version), [])),
                     "test_f1": run.data.metrics.get("test/f1") if run else None,
                     "data_hash": v.tags.get("data_hash", ""), "base_model": v.tags.get("base_model", ""),
                     "created": _date(v.creation_timestamp), "promotion": v.tags.get(champion.DECISION_TAG, "-"),
                     "rolled_back": v.tags.get(champion.ROLLED_BACK_TAG) == "true",
                     "reason": v.tags.get(champion.REASON_TAG, "")})
    return _emit(rows, as_json, lambda rs: render(
        ["version", "aliases", "test F1", "data", "base model", "created", "promotion"],
        [[r["version"], ",".join("@" + a for a in r["aliases"]) or None, r["test_f1"], r["data_hash"][:12] or None,
          r["base_model"].rstrip("/").rsplit("/", 1)[-1] or None,   # the model's own name, not the folder it is in
          r["created"], r["promotion"] + (" (rolled back)" if r["rolled_back"] else "")] for r in rs],
        right={"version", "test F1"}))


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
    if not rows and not as_json:
        print(f"@{alias} of {name} has no history yet")
        return 0
    return _emit(rows, as_json, lambda rs: render(
        ["#", "time", "action", "from -> to", "actor", "reason"],
        [[r["seq"], r["time"], r["action"], f"{r['from_version'] or '-'} -> {r['to_version'] or '-'}", r["actor"],
          r["reason"] + STATE_NOTES.get(r["state"], "")] for r in rs], right={"#"}))


@contextlib.contextmanager
def test_data(client, name: str, version: str, config: Path | None, overrides: list[str]):
    """(config, test split path, gold labels, data passed validation, data hash) from CONFIG or the version's own
    config, read and checked by the config's task type. The split (a copy of the test data) and the downloaded
    config live in one temporary folder, removed when the block ends: a scheduled or scripted `promote` leaves
    no copies of the data behind."""
    import mlflow

    from nerflow import data_identity, task_types
    from nerflow.config import load_config

    with tempfile.TemporaryDirectory(prefix="nerflow-gate-") as tmp:
        resolved = config is None   # the version's own resolved config, logged by the nerflow that trained it
        if config is None:
            run_id = client.get_model_version(name, version).run_id
            config = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config/resolved.yaml",
                                                              dst_path=tmp))
        cfg = load_config(config, overrides, resolved=resolved)
        validate = task_types.entry(cfg.task, "validate")
        corpus = validate.load_corpus(cfg.data)   # an unreadable file is bad input here (DataError), as in `run`
        report = validate.validate_corpus(corpus, cfg.data)
        folder = Path(tmp)   # the downloaded config sits in its config/ subfolder
        validate.write_validated({"test": corpus["test"]}, cfg.data, folder)
        split = folder / "test.jsonl"
        promote = task_types.entry(cfg.task, "promote")
        yield cfg, split, promote.gold(promote.examples(split)), report.passed, \
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
    with test_data(client, args.name, version, args.config, args.overrides) as (cfg, split, gold, passed,
                                                                                 data_hash), \
            _decision_not_logged():
        decision = champion.gate(client, args.name, version, args.alias, rules_of(cfg), split, gold, passed,
                                 auto=True, actor=actor, evidence={"test_data_hash": data_hash, "mlflow_run_id": None,
                                                                   "prefect_flow_run_id": None}, task=cfg.task,
                                 trust=args.trust or cfg.promote.trust_unverified,
                                 score_timeout_s=cfg.promote.score_timeout_s)
    if args.json:
        print(json.dumps(promotion.decision_json(decision), indent=1))
    else:
        print(decision_text(decision))
    if not decision.accepted:   # the reason is said here, once, in the error line (exit 4)
        raise promotion.Refused(f"{args.name} version {version} not promoted to @{args.alias}: {decision.reason}")
    return 0


@contextlib.contextmanager
def _decision_not_logged():
    """The gate logs its decision for the pipeline's log and the Prefect UI; `promote` prints it itself, so on the
    terminal that log line would be a second copy of the reason."""
    logger = logging.getLogger("nerflow.promote")
    level = logger.level
    logger.setLevel(logging.WARNING)   # the gate's warnings (a move found made outside nerflow) still show
    try:
        yield
    finally:
        logger.setLevel(level)


def cmd_rollback(args: argparse.Namespace) -> int:
    from nerflow.prefect_tasks import champion

    client = _client()
    entry = champion.rollback(client, args.name, args.alias, champion.actor_name(args.actor), args.reason)
    return _emit({"from_version": entry.from_version, "to_version": entry.to_version, "seq": entry.seq}, args.json,
                 lambda r: f"rolled back: @{args.alias} of {args.name} moved from version {entry.from_version} "
                           f"to {entry.to_version} (version {entry.from_version} is marked rolled back)")


def cmd_compare(args: argparse.Namespace) -> int:
    from nerflow import task_types
    from nerflow.prefect_tasks import champion, gate_scoring

    client = _client()
    found = [champion.check_version(client, args.name, v) for v in (args.v1, args.v2)]
    (v1, v2), task = [str(f.version) for f in found], champion.task_of(found[0])
    champion.check_version(client, args.name, v2, task)   # two versions of one task type
    kind, scorer = task_types.get(task), task_types.entry(task, "promote")
    with test_data(client, args.name, v1, args.config, args.overrides) as (_, split, gold, _, _):
        scored = gate_scoring.score_versions(args.name, [v1, v2], split, task, args.trust)
    tables = {v: scorer.gate_tables(gold, scored, (v, None))[0] for v in (v1, v2)}
    hits = {v: scorer.hits(gold, scored[v]) for v in (v1, v2)}
    types = sorted(set(tables[v1]["per_type"]) | set(tables[v2]["per_type"]))
    rows = [{"type": t, **{f"v{v}_{k}": tables[v]["per_type"].get(t, {}).get(k) for v in (v1, v2)
                           for k in ("precision", "recall", "f1")},
             "support": (tables[v1]["per_type"].get(t) or tables[v2]["per_type"].get(t))["support"]} for t in types]
    result = {"versions": [v1, v2], "rows": rows, "f1": {v1: tables[v1]["f1"], v2: tables[v2]["f1"]},
              "only_found_by": {v1: len(hits[v1] - hits[v2]), v2: len(hits[v2] - hits[v1])},
              f"gold_{kind.hit_key}": scorer.gold_count(gold)}

    def prf(row: dict, v: str) -> str:
        return "/".join("-" if row[f"v{v}_{k}"] is None else f"{row[f'v{v}_{k}']:.4f}"
                        for k in ("precision", "recall", "f1"))

    def text(r) -> str:
        table = render([kind.class_column, "support", f"v{v1} P/R/F1", f"v{v2} P/R/F1"],
                       [[row["type"], int(row["support"]), prf(row, v1), prf(row, v2)] for row in rows]
                       + [["overall", r[f"gold_{kind.hit_key}"], f"F1 {r['f1'][v1]:.4f}", f"F1 {r['f1'][v2]:.4f}"]],
                       right={"support"})
        return (f"{table}\ngold {kind.hit_key} found only by version {v1}: {r['only_found_by'][v1]}; only by "
                f"version {v2}: {r['only_found_by'][v2]}")

    return _emit(result, args.json, text)


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
    promote.add_argument("--trust", action="store_true",
                         help="score a version without a stored model hash (registered before nerflow stored one) "
                              "or with pickled weights")
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
    compare.add_argument("--trust", action="store_true",
                         help="score a version without a stored model hash (registered before nerflow stored one) "
                              "or with pickled weights")
    compare.set_defaults(func=cmd_compare)
