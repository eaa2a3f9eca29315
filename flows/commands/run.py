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

from nerflow import redact
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
    from nerflow import graph
    from nerflow.flows import past_run
    from nerflow.plan import describe, make_plan

    plan = make_plan(cfg, force_from, graph.PIPELINE)
    if dry_run:
        print("\n".join(describe(plan, cfg.cache_dir)))
        return 0
    past_run.reap_dead_runs()
    done = already_done(cfg, plan)
    if done is None and force_from is None and continue_run_id is None and shared_registry():
        from nerflow.prefect_tasks import registered, tracking

        done = registered.find_registered(tracking.configure(), cfg, plan)   # another host's cache built it
    if done is not None:
        print(format_summary(done, cfg.task))
        return 0
    from nerflow.flows.console import quiet_prefect_failures
    from nerflow.flows.prefect_server import prefect_api

    with prefect_api(meanwhile=_import_pipeline):   # torch, transformers, MLflow load while the server boots
        from nerflow.flows.pipeline import pipeline

        quiet_prefect_failures()
        state = pipeline(cfg, force_from, force_register=force_register, continue_run_id=continue_run_id,
                         return_state=True)
        if state.is_cancelled():
            print(redact.text(f"{state.message}; run `{again}` to continue"), file=sys.stderr)
            return EXIT_INTERRUPTED
        result = state.result()   # raises what the flow raised
    print(format_summary(result, cfg.task))
    return 0


def _import_pipeline() -> None:
    importlib.import_module("nerflow.flows.pipeline")


def shared_registry() -> bool:
    """A tracking server (a team setup): the registry, not this host's cache, knows what is done."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://", "databricks"))


def already_done(cfg, plan):
    """Every stage complete, and what each stage's output names outside the cache (a registered version) still
    there: the result, read from the cache alone (no flow, no torch). None when there is work to do."""
    if plan.first_to_compute() is not None:
        return None
    import importlib
    from pathlib import Path as _Path

    from nerflow import cache
    from nerflow.outputs import RunResult

    outputs = {}
    for stage in plan.graph.stages:
        step = plan.stages[stage.name]
        entry = cache.lookup(_Path(cfg.cache_dir), stage.name, step.key)
        if entry is None:
            return None
        if stage.external and not importlib.import_module(stage.adapter_module).still_valid(None, step, entry):
            return None   # e.g. the version was deleted from the registry since: let the flow register again
        outputs[stage.name] = stage.output.load(stage.name, step.key, entry, reused=True)
    log.info("nothing to do: every stage's inputs, settings and code are unchanged")
    registered = [o for o in outputs.values() if getattr(o, "registered_by_run", None)]
    run_id = registered[-1].registered_by_run if registered else ""
    return RunResult(run_id, outputs, already_done=True)


def cmd_rerun(args: argparse.Namespace) -> int:
    """Rerun a past pipeline run with exactly its resolved config (MLflow run id or Prefect flow-run id), as a new
    attempt of the same MLflow run."""
    from nerflow.flows import past_run

    past = past_run.load(args.run_id, args.from_stage)
    print(f"rerunning {past.run_id} ({past.status}) from {args.from_stage or 'the first stage not done'}")
    return run_pipeline(past.cfg, force_from=args.from_stage, dry_run=args.dry_run,
                        force_register=args.force_register, continue_run_id=past.run_id,
                        again=f"nerflow rerun {past.run_id}")


def cmd_runs(args: argparse.Namespace) -> int:
    from nerflow.flows.past_run import reap_dead_runs
    from nerflow.prefect_tasks import tracking

    client = tracking.configure()
    reap_dead_runs()
    from nerflow.prefect_tasks import mlflow_pages

    exps = {e.experiment_id: e.name for e in mlflow_pages.experiments(client)}   # all of them, past the first page
    runs = mlflow_pages.runs(client, list(exps), "tags.`nerflow.logical_run` != ''",
                             order_by=["attributes.start_time DESC"], limit=args.limit)
    rows = [run_row(client, r, exps) for r in runs]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'started':<17} {'status':<9} {'attempts':>8} {'stages':<8} {'failed stage':<12} {'test F1':>7}  "
          f"{'run id':<32} experiment")
    for row in rows:
        f1 = f"{row['test_f1']:.4f}" if row["test_f1"] is not None else "-"
        done = sum(state in ("computed", "reused") for state in row["stages"].values())
        progress = f"{done}/{len(row['stages'])}"
        print(f"{row['started']:<17} {row['status']:<9} {row['attempts']:>8} {progress:<8} "
              f"{row['failed_stage'] or '-':<12} {f1:>7}  {row['run_id']:<32} {row['experiment']}")
        if row["superseded_by"]:
            print(f"{'':<17} superseded by {row['superseded_by']}")
        elif row["continue"]:
            print(f"{'':<17} continue: {row['continue']}")
    return 0


def run_row(client, run, experiments: dict[str, str]) -> dict:
    """One pipeline run as `nerflow runs` shows it (`experiments`: id -> name). A failed or killed run that a later
    run of the same logical run completed is `superseded_by` that run and has nothing to `continue`."""
    from nerflow.flows.past_run import stopped_stage, superseded_by

    stopped, newer = stopped_stage(client, run), superseded_by(client, run, list(experiments))
    unfinished = run.info.status not in ("FINISHED", "RUNNING")
    return {"run_id": run.info.run_id, "experiment": experiments.get(run.info.experiment_id), "status": run.info.status,
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000)),
            "attempts": int(run.data.tags.get("nerflow.attempts", "1")),
            "failed_stage": stopped, "stages": stage_states(run, stopped), "test_f1": run.data.metrics.get("test/f1"),
            "superseded_by": newer,
            "continue": f"nerflow rerun {run.info.run_id}" if unfinished and newer is None else None}


def stage_states(run, stopped: str | None) -> dict[str, str | None]:
    """Per stage of the graph, what the run's latest attempt did with it: "computed", "reused", "failed" or
    "killed" (the stage it stopped in), or None (not reached: stages run in the graph's order, so none after the
    stopped one, whatever an earlier attempt's tags say)."""
    from nerflow import graph

    states, reached = {}, True
    for name in graph.PIPELINE.run_names(graph.logged_on(run.data.params)):   # with its optional stages that were on
        if name == stopped:
            states[name], reached = ("killed" if run.info.status == "KILLED" else "failed"), False
        else:
            states[name] = run.data.tags.get(f"stage.{name}") if reached else None
    return states


def format_summary(result, task: str) -> str:
    """What `nerflow run` prints at the end: each stage's part (nerflow.outputs), in the graph's order."""
    from nerflow import task_types

    kind = task_types.get(task)
    lines = ["", "nerflow run finished", ""]
    for output in result.outputs.values():
        lines += output.summary_lines(kind)
    reused = [stage for stage, was_reused in result.stages.items() if was_reused]
    lines += [f"MLflow run: {result.run_id}" + (f" (reused from cache: {', '.join(reused)})" if reused else ""),
              f"browse:     {browse_hint(result.run_id)}"]
    return redact.text("\n".join(lines))   # no secret printed: docs/cli.md, "Secrets"


LOCAL_UI = "http://127.0.0.1:5000"   # where `mlflow ui` serves by default
# MLflow 3.17's UI opens an experiment in its GenAI or model-training layout from the switch at its top left: the
# `workflowType` URL parameter, else the browser's last choice, else GenAI (the experiment tag
# `mlflow.experimentKind`, which nerflow sets too, does not pick it in 3.17.2). Links nerflow prints say which.
TRAINING_VIEW = "workflowType=machine_learning"


def browse_hint(run_id: str) -> str:
    """Where to see the run: its page on the tracking server, or how to start the UI on the local store, then it."""
    uri = tracking_uri_for_display()
    page = f"#/experiments/{experiment_of(run_id)}/runs/{run_id}?{TRAINING_VIEW}"
    if uri.startswith(("http://", "https://")):   # a link without credentials: the browser asks for them
        return f"{redact.uri(uri).rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}, then {LOCAL_UI}/{page}"


def experiment_of(run_id: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient().get_run(run_id).info.experiment_id


def tracking_uri_for_display() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    default = f"sqlite:///{Path('mlruns/mlflow.db').resolve()}"
    return "sqlite:///mlruns/mlflow.db" if not uri or uri == default else redact.text(uri)


def add_parsers(sub) -> None:
    from nerflow import graph

    stages = graph.PIPELINE.all_names

    run = sub.add_parser("run", help="run the pipeline: reuses finished stages, registers the model")
    run.add_argument("config", type=Path)
    run.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=1 data.dir=../data")
    run.add_argument("--dry-run", action="store_true", help="print per stage: reuse or compute, and why")
    run.add_argument("--force-register", action="store_true", help="register a new version even if done before")
    run.set_defaults(func=cmd_run)
    rerun = sub.add_parser("rerun", help="continue a past pipeline run with exactly its resolved config")
    rerun.add_argument("run_id", help="MLflow run id or Prefect flow-run id")
    rerun.add_argument("--from", dest="from_stage", choices=stages,
                       help="recompute this stage and every stage downstream of it")
    rerun.add_argument("--force-register", action="store_true",
                       help="a new version even if the weights equal an existing version's")
    rerun.add_argument("--dry-run", action="store_true")
    rerun.set_defaults(func=cmd_rerun)
    runs = sub.add_parser("runs", help="recent pipeline runs: status, attempts, failed stage, test F1")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    runs.set_defaults(func=cmd_runs)
