"""`nerflow` command line: run, rerun and inspect pipeline runs, check data, manage the stage cache, predict.

Bad input ends with one line `error: <where>: <what>` and exit code 2. Heavy libraries load only for commands that
need them: `nerflow run` first plans every stage from content hashes (nerflow.plan) and, when everything is already
done, answers from the cache manifests without starting Prefect or importing torch.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2
log = logging.getLogger("nerflow.cli")


def _setup_env() -> None:
    defaults = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                "PREFECT_LOGGING_EXTRA_LOGGERS": "nerflow", "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",            # per-file "Loading weights" bars: noise
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                "TRANSFORMERS_VERBOSITY": "error"}             # e.g. the per-weight load report of a new head
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("httpx", "alembic", "mlflow", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def bad_input_types() -> tuple[type[BaseException], ...]:
    from nerflow.config import ConfigError
    from nerflow.data import DataError
    from nerflow.locks import RunLockedError
    from nerflow.validate import ValidationFailed

    return ConfigError, DataError, ValidationFailed, RunLockedError


# ---------------------------------------------------------------------------------------------------- run / rerun
def cmd_run(args: argparse.Namespace) -> int:
    from nerflow.config import load_config

    cfg = load_config(args.config, args.overrides)
    return run_pipeline(cfg, force_from="register" if args.force_register else None, dry_run=args.dry_run)


def run_pipeline(cfg, force_from: str | None, dry_run: bool) -> int:
    from nerflow import tasks
    from nerflow.plan import STAGES, explain, make_plan

    plan = make_plan(cfg, force_from, tasks.sources())
    if dry_run:
        for stage in STAGES:
            print(f"{stage:<9} {explain(plan.stages[stage], cfg.cache_dir)}")
        return 0
    done = already_done(plan)
    if done is not None:
        print(format_summary(done))
        return 0
    from nerflow.flows.pipeline import ner_pipeline

    print(format_summary(ner_pipeline(cfg, force_from)))
    return 0


def already_done(plan) -> dict | None:
    """Every stage complete and the registered version still in the registry: the result, read from the cache."""
    if plan.first_to_compute() is not None:
        return None
    registered = json.loads((plan.stages["register"].path / "registered.json").read_text())
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from nerflow.tasks import tracking

    try:
        MlflowClient(tracking.tracking_uri()).get_model_version(registered["model_name"], str(registered["version"]))
    except MlflowException:
        return None  # deleted from the registry since: let the flow register again
    metrics = json.loads((plan.stages["evaluate"].path / "metrics.json").read_text())
    log.info("nothing to do: every stage's inputs, settings and code are unchanged")
    return {"metrics": metrics, **registered, "run_id": registered["registered_by_run"], "uri": f"models:/{registered['model_name']}@{registered['alias']}",
            "stages": {stage: True for stage in plan.stages}, "already_registered": True}


def cmd_rerun(args: argparse.Namespace) -> int:
    """Rerun a past pipeline run with exactly its resolved config (MLflow run id or Prefect flow-run id)."""
    import tempfile

    import mlflow
    from mlflow import MlflowClient

    from nerflow.config import load_config
    from nerflow.tasks import tracking

    tracking.configure()
    client = MlflowClient()
    run = find_run(client, args.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="config/resolved.yaml",
                                                   dst_path=tmp)
        cfg = load_config(path)
    print(f"rerunning {run.info.run_id} ({run.info.status}) from {args.from_stage or 'the first stage not done'}")
    return run_pipeline(cfg, force_from=args.from_stage, dry_run=args.dry_run)


def find_run(client, run_or_flow_id: str):
    from mlflow.exceptions import MlflowException

    from nerflow.config import ConfigError

    try:
        return client.get_run(run_or_flow_id)
    except MlflowException:
        pass
    for exp in client.search_experiments():
        # every attempt's Prefect flow-run id is kept (a continued run has several)
        runs = client.search_runs([exp.experiment_id], f"tags.prefect_flow_run_ids LIKE '%{run_or_flow_id}%'",
                                  max_results=1)
        if runs:
            return runs[0]
    raise ConfigError(f"no pipeline run with MLflow run id or Prefect flow-run id {run_or_flow_id!r}")


def cmd_runs(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from nerflow.tasks import tracking

    tracking.configure()
    client = MlflowClient()
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, "tags.`nerflow.logical_run` != ''", order_by=["attributes.start_time DESC"],
                              max_results=args.limit) if exps else []
    print(f"{'started':<17} {'status':<9} {'attempts':>8} {'failed stage':<12} {'test F1':>7}  {'run id':<32} experiment")
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    for r in runs:
        t = r.data.tags
        f1 = r.data.metrics.get("test_f1")
        print(f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(r.info.start_time / 1000)):<17} {r.info.status:<9} "
              f"{t.get('nerflow.attempts', '1'):>8} {t.get('failed_stage', '') or '-':<12} "
              f"{f'{f1:.4f}' if f1 is not None else '-':>7}  {r.info.run_id:<32} {names.get(r.info.experiment_id)}")
    return 0


# ---------------------------------------------------------------------------------------------------- cache
def cmd_cache_ls(args: argparse.Namespace) -> int:
    from nerflow import cache

    entries = cache.list_entries(args.cache_dir)
    total = 0
    for e in entries:
        total += e.bytes
        print(f"{e.stage:<9} {e.key}  {e.bytes / 1e6:>9.1f} MB  {time.strftime('%Y-%m-%d %H:%M', time.localtime(e.modified))}"
              f"{'' if e.complete else '  (partial: checkpoints of an unfinished run)'}")
    print(f"{len(entries)} entries, {total / 1e6:.1f} MB in {args.cache_dir}")
    return 0


def protected_keys(cache_dir: Path) -> set[str]:
    """Stage keys that a model with an alias or a live run depends on."""
    from mlflow import MlflowClient

    from nerflow.locks import held_locks
    from nerflow.tasks import tracking

    tracking.configure()
    client = MlflowClient()
    keys: set[str] = set()
    for model in client.search_registered_models():
        for version in {str(v) for v in (model.aliases or {}).values()}:
            tags = client.get_model_version(model.name, version).tags
            keys |= {v for k, v in tags.items() if k.startswith("nerflow.") and k.endswith("_key")}
    for lock in held_locks(cache_dir):
        keys |= set(lock.get("keys", {}).values())
    return keys


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from nerflow import cache

    if args.keep is None and args.older_than is None:
        raise _config_error("nerflow cache prune needs --keep N and/or --older-than DAYS")
    protected = protected_keys(args.cache_dir)
    doomed = cache.select_prunable(cache.list_entries(args.cache_dir), args.keep,
                                   args.older_than * 86400 if args.older_than is not None else None, protected)
    for e in doomed:
        print(f"{'would remove' if args.dry_run else 'removing'} {e.stage}/{e.path.name} ({e.bytes / 1e6:.1f} MB)")
        if not args.dry_run:
            cache.remove(e)
    print(f"{len(doomed)} entries, {sum(e.bytes for e in doomed) / 1e6:.1f} MB"
          f"{' would be' if args.dry_run else ''} freed; {len(protected)} keys protected (aliased models, live runs)")
    return 0


def _config_error(message: str):
    from nerflow.config import ConfigError

    return ConfigError(message)


# ---------------------------------------------------------------------------------------------------- misc
def cmd_validate(args: argparse.Namespace) -> int:
    from nerflow.config import load_config
    from nerflow.data import load_corpus
    from nerflow.validate import ValidationFailed, validate_corpus

    cfg = load_config(args.config, args.overrides)
    corpus = load_corpus(cfg.data)
    report = validate_corpus(corpus, cfg.data)
    if not report.passed:
        raise ValidationFailed(report.summary())
    print(report.summary())
    print("data OK: " + ", ".join(f"{split} {len(s)} sentences" for split, s in corpus.items()))
    return 0


def cmd_make_sample(args: argparse.Namespace) -> int:
    from nerflow.synthetic import generate_corpus

    paths = generate_corpus(Path(args.out_dir), seed=args.seed)
    print(f"synthetic corpus in {Path(args.out_dir)}: " + ", ".join(p.name for p in paths.values()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import mlflow

    from nerflow.tasks import tracking

    tracking.configure()
    model = mlflow.pyfunc.load_model(args.model_uri)
    for text, spans in zip(args.texts, model.predict(list(args.texts))):
        print(json.dumps({"text": text, "entities": spans}, ensure_ascii=False))
    return 0


def format_summary(result: dict) -> str:
    metrics = result["metrics"]
    types = sorted(k.removeprefix("test_f1_") for k in metrics if k.startswith("test_f1_"))
    width = max([len(t) for t in types] + [7])
    lines = ["", "nerflow run finished", "", f"{'type':<{width}}  {'val F1':>7}  {'test F1':>7}"]
    for t in types:
        lines.append(f"{t:<{width}}  {metrics.get(f'validation_f1_{t}', 0):>7.4f}  {metrics[f'test_f1_{t}']:>7.4f}")
    lines.append(f"{'overall':<{width}}  {metrics['validation_f1']:>7.4f}  {metrics['test_f1']:>7.4f}  (micro)")
    reused = [stage for stage, was_reused in result["stages"].items() if was_reused]
    if result.get("already_registered") or result["stages"].get("register"):
        lines += ["", f"already registered: {result['model_name']} version {result['version']} by run "
                      f"{result['registered_by_run']}; nothing new (use --force-register for a new version)"]
    else:
        lines += ["", f"registered: {result['model_name']} version {result['version']} (alias @{result['alias']})"]
    lines += [f"load it:    mlflow.pyfunc.load_model('{result['uri']}')",
              f"MLflow run: {result['run_id']}" + (f" (reused from cache: {', '.join(reused)})" if reused else ""),
              f"browse:     mlflow ui --backend-store-uri {tracking_uri_for_display()}"]
    return "\n".join(lines)


def tracking_uri_for_display() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    default = f"sqlite:///{Path('mlruns/mlflow.db').resolve()}"
    return "sqlite:///mlruns/mlflow.db" if not uri or uri == default else uri


def build_parser() -> argparse.ArgumentParser:
    from nerflow.plan import STAGES

    parser = argparse.ArgumentParser(prog="nerflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline: reuses finished stages, registers the model")
    run.add_argument("config", type=Path)
    run.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=1 data.dir=../data")
    run.add_argument("--dry-run", action="store_true", help="print per stage: reuse or compute, and why")
    run.add_argument("--force-register", action="store_true", help="register a new version even if done before")
    run.set_defaults(func=cmd_run)
    rerun = sub.add_parser("rerun", help="rerun a past pipeline run with exactly its resolved config")
    rerun.add_argument("run_id", help="MLflow run id or Prefect flow-run id")
    rerun.add_argument("--from", dest="from_stage", choices=STAGES, help="recompute this stage and all after it")
    rerun.add_argument("--dry-run", action="store_true")
    rerun.set_defaults(func=cmd_rerun)
    runs = sub.add_parser("runs", help="recent pipeline runs: status, attempts, failed stage, test F1")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=cmd_runs)
    cache_p = sub.add_parser("cache", help="stage cache: list or prune")
    cache_sub = cache_p.add_subparsers(dest="cache_command", required=True)
    ls = cache_sub.add_parser("ls", help="entries and sizes")
    ls.add_argument("--cache-dir", type=Path, default=Path(".cache/nerflow"))
    ls.set_defaults(func=cmd_cache_ls)
    prune = cache_sub.add_parser("prune", help="remove old entries (never those of aliased models or live runs)")
    prune.add_argument("--cache-dir", type=Path, default=Path(".cache/nerflow"))
    prune.add_argument("--keep", type=int, help="keep the newest N entries of each stage")
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries older than DAYS")
    prune.add_argument("--dry-run", action="store_true")
    prune.set_defaults(func=cmd_cache_prune)
    val = sub.add_parser("validate", help="run only the data checks")
    val.add_argument("config", type=Path)
    val.add_argument("overrides", nargs="*")
    val.set_defaults(func=cmd_validate)
    sample = sub.add_parser("make-sample", help="write the seeded synthetic quickstart corpus")
    sample.add_argument("out_dir", nargs="?", default="data/generated/quickstart")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_make_sample)
    pred = sub.add_parser("predict", help="entity spans from a model URI, e.g. models:/nerflow-ner@challenger")
    pred.add_argument("model_uri")
    pred.add_argument("texts", nargs="+")
    pred.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_env()
    try:
        return args.func(args)
    except bad_input_types() as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
