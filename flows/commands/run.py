"""`nerflow run`, `rerun` and `runs`: start, continue and list pipeline runs.

`nerflow run` first plans every stage from content hashes (nerflow.plan) and, when everything is already done,
answers from the cache manifests without starting Prefect or importing torch.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from nerflow.config import ConfigError
from nerflow.flows.errors import EXIT_INTERRUPTED

log = logging.getLogger("nerflow.cli")


def cmd_run(args: argparse.Namespace) -> int:
    from nerflow.config import load_config

    cfg = load_config(args.config, args.overrides)
    again = " ".join(["nerflow", "run", _quote(str(args.config)), *map(_quote, args.overrides)])
    return run_pipeline(cfg, force_from="register" if args.force_register else None, dry_run=args.dry_run,
                        force_register=args.force_register, again=again)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def run_pipeline(cfg, force_from: str | None, dry_run: bool, force_register: bool = False,
                 continue_run_id: str | None = None, again: str = "the same command") -> int:
    from nerflow import prefect_tasks
    from nerflow.plan import STAGES, explain, make_plan

    plan = make_plan(cfg, force_from, prefect_tasks.sources())
    if dry_run:
        for stage in STAGES:
            print(f"{stage:<9} {explain(plan.stages[stage], cfg.cache_dir)}")
        return 0
    reap_dead_runs()
    done = already_done(plan)
    if done is None and force_from is None and continue_run_id is None and shared_registry():
        from nerflow.prefect_tasks import registered, tracking

        done = registered.find_registered(tracking.configure(), cfg, plan)   # another host's cache built it
    if done is not None:
        print(format_summary(done, cfg.task))
        return 0
    from nerflow.flows.console import quiet_prefect_failures
    from nerflow.flows.prefect_server import prefect_api

    with prefect_api(meanwhile=_import_pipeline):   # torch, transformers, MLflow load while the server boots
        from nerflow.flows.pipeline import ner_pipeline

        quiet_prefect_failures()
        state = ner_pipeline(cfg, force_from, force_register=force_register, continue_run_id=continue_run_id,
                             return_state=True)
        if state.is_cancelled():
            print(f"{state.message}; run `{again}` to continue", file=sys.stderr)
            return EXIT_INTERRUPTED
        result = state.result()   # raises what the flow raised
    print(format_summary(result, cfg.task))
    return 0


def _import_pipeline() -> None:
    importlib.import_module("nerflow.flows.pipeline")


def shared_registry() -> bool:
    """A tracking server (a team setup): the registry, not this host's cache, knows what is done."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://", "databricks"))


def reap_dead_runs() -> None:
    """Runs left RUNNING by a process that died (kill -9) are marked KILLED, and their orphaned temporary Prefect
    servers stopped, by the next nerflow command on the host."""
    from nerflow.flows.prefect_server import stop_orphans
    from nerflow.prefect_tasks import tracking

    stop_orphans()
    for run_id in tracking.reap_dead_runs(tracking.configure()):
        log.warning("run %s was left RUNNING by a process on this host that ended without closing it (killed, or "
                    "the tracking server was unreachable): marked KILLED; the same command, or `nerflow rerun %s`, "
                    "continues it", run_id, run_id)


def already_done(plan) -> dict | None:
    """Every stage complete and the registered version still in the registry: the result, read from the cache."""
    if plan.first_to_compute() is not None:
        return None
    registered = json.loads((plan.stages["register"].path / "registered.json").read_text())
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from nerflow.prefect_tasks import tracking

    try:
        MlflowClient(tracking.tracking_uri()).get_model_version(registered["model_name"], str(registered["version"]))
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None  # deleted from the registry since: let the flow register again
    metrics = json.loads((plan.stages["evaluate"].path / "metrics.json").read_text())
    promotion = json.loads((plan.stages["promote"].path / "comparison.json").read_text())
    log.info("nothing to do: every stage's inputs, settings and code are unchanged")
    return {"metrics": metrics, **registered, "promotion": promotion, "run_id": registered["registered_by_run"],
            "uri": f"models:/{registered['model_name']}@{registered['alias']}",
            "stages": {stage: True for stage in plan.stages}, "already_registered": True}


def cmd_rerun(args: argparse.Namespace) -> int:
    """Rerun a past pipeline run with exactly its resolved config (MLflow run id or Prefect flow-run id), as a new
    attempt of the same MLflow run."""
    import tempfile

    import mlflow
    from mlflow import MlflowClient

    from nerflow.config import load_config
    from nerflow.prefect_tasks import tracking

    tracking.configure()
    reap_dead_runs()
    run = find_run(MlflowClient(), args.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="config/resolved.yaml",
                                                   dst_path=tmp)
        cfg = load_config(path)
    print(f"rerunning {run.info.run_id} ({run.info.status}) from {args.from_stage or 'the first stage not done'}")
    return run_pipeline(cfg, force_from=args.from_stage, dry_run=args.dry_run, force_register=args.force_register,
                        continue_run_id=run.info.run_id, again=f"nerflow rerun {run.info.run_id}")


def find_run(client, run_or_flow_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_or_flow_id)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    for exp in client.search_experiments():
        # every attempt's Prefect flow-run id is kept (a continued run has several)
        runs = client.search_runs([exp.experiment_id], f"tags.prefect_flow_run_ids LIKE '%{run_or_flow_id}%'",
                                  max_results=1)
        if runs:
            return runs[0]
    raise ConfigError(f"no pipeline run with MLflow run id or Prefect flow-run id {run_or_flow_id!r}")


def cmd_runs(args: argparse.Namespace) -> int:
    from nerflow.prefect_tasks import tracking

    client = tracking.configure()
    reap_dead_runs()
    exps = {e.experiment_id: e.name for e in client.search_experiments()}
    runs = client.search_runs(list(exps), "tags.`nerflow.logical_run` != ''", order_by=["attributes.start_time DESC"],
                              max_results=args.limit) if exps else []
    rows = [{"run_id": r.info.run_id, "experiment": exps.get(r.info.experiment_id), "status": r.info.status,
             "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.info.start_time / 1000)),
             "attempts": int(r.data.tags.get("nerflow.attempts", "1")),
             "failed_stage": r.data.tags.get("failed_stage") or None, "test_f1": r.data.metrics.get("test/f1"),
             "continue": None if r.info.status in ("FINISHED", "RUNNING") else f"nerflow rerun {r.info.run_id}"}
            for r in runs]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'started':<17} {'status':<9} {'attempts':>8} {'failed stage':<12} {'test F1':>7}  {'run id':<32} experiment")
    for row in rows:
        f1 = f"{row['test_f1']:.4f}" if row["test_f1"] is not None else "-"
        print(f"{row['started']:<17} {row['status']:<9} {row['attempts']:>8} {row['failed_stage'] or '-':<12} "
              f"{f1:>7}  {row['run_id']:<32} {row['experiment']}")
        if row["continue"]:
            print(f"{'':<17} continue: {row['continue']}")
    return 0


def format_summary(result: dict, task: str = "token-classification") -> str:
    from nerflow import task_types

    kind = task_types.get(task)
    metrics = result["metrics"]
    # entity types or classes from the per-class support keys (`test/f1_` also starts `test/f1_macro`);
    # docs/metrics.md
    types = sorted(k.removeprefix("test/support_") for k in metrics if k.startswith("test/support_"))
    head = "type" if task == "token-classification" else "class"
    width = max([len(t) for t in types] + [8])
    lines = ["", "nerflow run finished", "", f"{head:<{width}}  {'val F1':>7}  {'test F1':>7}"]
    for t in types:
        lines.append(f"{t:<{width}}  {metrics.get(f'val/best_f1_{t}', 0):>7.4f}  {metrics[f'test/f1_{t}']:>7.4f}")
    lines.append(f"{'overall':<{width}}  {metrics['val/best_f1']:>7.4f}  {metrics['test/f1']:>7.4f}  "
                 f"({kind.headline.split()[0]})")
    if "test/accuracy" in metrics:
        lines.append(f"{'accuracy':<{width}}  {metrics.get('val/best_accuracy', float('nan')):>7.4f}  "
                     f"{metrics['test/accuracy']:>7.4f}")
    reused = [stage for stage, was_reused in result["stages"].items() if was_reused]
    if result.get("already_registered") or result["stages"].get("register"):
        lines += ["", f"already registered: {result['model_name']} version {result['version']} by run "
                      f"{result['registered_by_run']}; nothing new (use --force-register for a new version)"]
    elif not result.get("new_version", True):
        lines += ["", f"weights identical to {result['model_name']} version {result['version']}: no new version "
                      "registered (use --force-register for one)"]
    else:
        lines += ["", f"registered: {result['model_name']} version {result['version']} (alias @{result['alias']})"]
    promotion = result.get("promotion")
    if promotion:
        lines.append(f"promotion:  {promotion['decision']} for @{promotion['alias']}"
                     f"{'' if promotion['moved'] or not promotion['accepted'] else ' (promote.auto is false: not moved)'}"
                     f": {promotion['reason']}")
    lines += [f"load it:    mlflow.pyfunc.load_model('models:/{result['model_name']}/{result['version']}')",
              f"MLflow run: {result['run_id']}" + (f" (reused from cache: {', '.join(reused)})" if reused else ""),
              f"browse:     {browse_hint()}"]
    return "\n".join(lines)


def browse_hint() -> str:
    uri = tracking_uri_for_display()
    return f"{uri} (the MLflow UI)" if uri.startswith(("http://", "https://")) else \
        f"mlflow ui --backend-store-uri {uri}"


def tracking_uri_for_display() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    default = f"sqlite:///{Path('mlruns/mlflow.db').resolve()}"
    return "sqlite:///mlruns/mlflow.db" if not uri or uri == default else uri


def add_parsers(sub) -> None:
    from nerflow.plan import STAGES

    run = sub.add_parser("run", help="run the pipeline: reuses finished stages, registers the model")
    run.add_argument("config", type=Path)
    run.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=1 data.dir=../data")
    run.add_argument("--dry-run", action="store_true", help="print per stage: reuse or compute, and why")
    run.add_argument("--force-register", action="store_true", help="register a new version even if done before")
    run.set_defaults(func=cmd_run)
    rerun = sub.add_parser("rerun", help="continue a past pipeline run with exactly its resolved config")
    rerun.add_argument("run_id", help="MLflow run id or Prefect flow-run id")
    rerun.add_argument("--from", dest="from_stage", choices=STAGES, help="recompute this stage and all after it")
    rerun.add_argument("--force-register", action="store_true",
                       help="a new version even if the weights equal an existing version's")
    rerun.add_argument("--dry-run", action="store_true")
    rerun.set_defaults(func=cmd_rerun)
    runs = sub.add_parser("runs", help="recent pipeline runs: status, attempts, failed stage, test F1")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    runs.set_defaults(func=cmd_runs)
