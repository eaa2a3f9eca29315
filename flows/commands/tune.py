"""`nerflow tune CONFIG [key=value ...] --trials N [--space FILE] [--timeout S] [--register-best] [--json]`: an
Optuna study of the config's training settings, run as the Prefect flow `nerflow-tune` (flows/tune_flow.py);
the same command continues an interrupted study. `nerflow curve CONFIG --fractions F,... --seeds N [--baseline]`:
a learning curve, the flow `nerflow-curve` (flows/curve_flow.py). docs/tuning.md."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from nerflow import redact
from nerflow.flows.errors import EXIT_INTERRUPTED


def cmd_tune(args: argparse.Namespace) -> int:
    from nerflow import tuning
    from nerflow.config import ConfigError, load_config

    if args.trials < 1:
        raise ConfigError(f"--trials: at least 1 (got {args.trials})")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout: seconds > 0 (got {args.timeout:g})")
    cfg = load_config(args.config, args.overrides)   # bad input fails here, before any server starts
    space = tuning.load_space(args.space, cfg)
    tuning.check_space(space, args.config, args.overrides, cfg)
    again = " ".join(["nerflow", "tune", *map(shlex.quote, [str(args.config), *args.overrides]),
                      "--trials", str(args.trials), *(["--space", shlex.quote(str(args.space))] if args.space else [])])
    if args.pool:
        return tune_on_pool(args, cfg, space)
    if args.workers != 1:
        raise ConfigError("--workers goes with --pool (on one machine trials run one at a time)")
    from nerflow.flows import past_run

    past_run.reap_dead_runs()   # a killed earlier attempt's MLflow runs: KILLED, not RUNNING

    def study():
        from nerflow.flows.tune_flow import tune

        return tune(str(args.config), list(args.overrides), args.trials, str(args.space) if args.space else None,
                    args.timeout, args.study, args.startup_trials, args.pruner_startup_trials, args.warmup_epochs,
                    return_state=True)

    result = run_flow(study, again)
    if result is None:
        return EXIT_INTERRUPTED
    show(result, args.json)
    if args.register_best:
        return register_best(args, result)
    return 0


def tune_on_pool(args: argparse.Namespace, cfg, space) -> int:
    """The study as `--workers` runs of the deployment `nerflow-tune/STUDY` on `--pool` (flows/tune_deployments.py):
    started, waited for, then the study as the shared storage has it."""
    import os

    import optuna

    from nerflow import tuning
    from nerflow.config import ConfigError
    from nerflow.flows import tune_deployments
    from nerflow.flows.deploy_checks import schema_keys
    from nerflow.flows.tune_flow import result_of
    from nerflow.prefect_tasks import studies, tracking
    from nerflow.tune_guard import check_tune_parameters

    if not os.environ.get(tuning.STORAGE_ENV):
        raise ConfigError(f"--pool: the workers share a study through {tuning.STORAGE_ENV} (the team's PostgreSQL: "
                          "docs/tuning.md); set it here as on the workers")
    if args.workers < 1:
        raise ConfigError(f"--workers: at least 1 (got {args.workers})")
    workdir = str(Path.cwd())
    study = args.study or tuning.study_name(cfg, space)
    parameters = {"config": str(args.config), "overrides": list(args.overrides), "trials": args.trials,
                  "space": str(args.space) if args.space else None, "timeout": args.timeout, "study": study,
                  "startup_trials": args.startup_trials, "pruner_startup_trials": args.pruner_startup_trials,
                  "warmup_epochs": args.warmup_epochs, "workdir": workdir}
    leaves, sections = schema_keys()   # what the worker will check, with the workdir as the only root
    check_tune_parameters(parameters["config"], parameters["overrides"], workdir, parameters["space"], study,
                          {k: parameters[k] for k in ("trials", "timeout", "startup_trials", "pruner_startup_trials",
                                                      "warmup_epochs")},
                          cwd=Path.cwd(), roots=(Path(workdir),), known_keys=leaves, sections=sections)
    settings = tuning.SearchSettings.for_study(args.trials, cfg.seed, args.startup_trials,
                                               args.pruner_startup_trials, args.warmup_epochs)
    # the parent run before the runs: each finds it, none races another to create it
    studies.open_parent(tracking.configure(), cfg, study, f"tune {study}", "",
                        {**settings.as_params(), "tune.study": study, "tune.space": str(space.as_data())})
    from nerflow.flows.study_storage import make_storage

    # the storage's schema and the study before any worker opens them: first openers would race to create both
    optuna.create_study(storage=make_storage(tuning.storage_url()), study_name=study, direction="maximize",
                        load_if_exists=True)
    ids = tune_deployments.submit(study, parameters, args.pool, args.workers)
    print(f"study {study}: {len(ids)} runs of {tune_deployments.FLOW_NAME}/{study} on work pool {args.pool} "
          f"(start workers with `nerflow worker --pool {args.pool}`); waiting for them", file=sys.stderr)
    states = tune_deployments.wait(ids)
    url = tuning.storage_url()
    loaded = optuna.load_study(study_name=study, storage=url)
    parent = studies.find_parent(tracking.configure(), cfg, study)
    result = result_of(loaded, url, parent.info.run_id if parent else "", space, None, args.trials)
    if args.json:
        print(json.dumps({**result.to_json(), "flow_runs": states}, indent=1, default=str))
    else:
        print("\n".join(result.lines()))
    failed = {k: v for k, v in states.items() if v != "COMPLETED"}
    if failed:
        raise RuntimeError(f"tuning runs that did not complete: {failed} (their logs: the Prefect UI)")
    return 0


def register_best(args: argparse.Namespace, result) -> int:
    """The normal pipeline with the best config (registration, the gate); its training is the best trial's,
    reused from the stage cache."""
    from nerflow.config import ConfigError, load_config
    from nerflow.flows.commands.run import run_pipeline

    if result.best is None:
        raise ConfigError("--register-best: no trial completed, nothing to register")
    cfg = load_config(args.config, [*args.overrides, *result.best["overrides"]])
    print(f"registering the best trial ({result.best['number']}): nerflow run with its values")
    return run_pipeline(cfg, force_from=None, dry_run=False,
                        again=" ".join(["nerflow run", shlex.quote(str(args.config)),
                                        *map(shlex.quote, [*args.overrides, *result.best["overrides"]])]))


def cmd_curve(args: argparse.Namespace) -> int:
    from nerflow import task_types
    from nerflow.config import ConfigError, load_config
    from nerflow.flows.curve_flow import check_fractions

    try:
        numbers = [float(f) for f in args.fractions.split(",") if f.strip()]
    except ValueError:
        raise ConfigError(f"--fractions: comma-separated numbers in (0, 1], got {args.fractions!r}") from None
    fractions = check_fractions(numbers)
    if args.seeds < 1:
        raise ConfigError(f"--seeds: at least 1 (got {args.seeds})")
    cfg = load_config(args.config, args.overrides)
    if args.baseline and "baseline" not in task_types.get(cfg.task).entries:
        raise ConfigError(f"--baseline: the TF-IDF baseline is for texts, not {cfg.task}")
    from nerflow.flows import past_run
    from nerflow.flows.curve_flow import check_points

    check_points(str(args.config), list(args.overrides), fractions, [cfg.seed + i for i in range(args.seeds)])
    past_run.reap_dead_runs()
    again = " ".join(["nerflow", "curve", *map(shlex.quote, [str(args.config), *args.overrides]),
                      "--fractions", args.fractions, "--seeds", str(args.seeds), *(["--baseline"] * args.baseline)])

    def points():
        from nerflow.flows.curve_flow import curve

        return curve(str(args.config), list(args.overrides), fractions, args.seeds, args.baseline, return_state=True)

    result = run_flow(points, again)
    if result is None:
        return EXIT_INTERRUPTED
    show(result, args.json)
    return 0


def run_flow(call, again: str):
    """`call()` (a flow called with return_state=True) against the configured Prefect API or a temporary server:
    its result, or None after an interrupt (the message and the command that continues printed)."""
    from nerflow.flows.console import quiet_prefect_failures
    from nerflow.flows.prefect_server import prefect_api

    with prefect_api():
        quiet_prefect_failures()
        state = call()
        if state.is_cancelled():
            print(redact.text(f"{state.message}; run `{again}` to continue"), file=sys.stderr)
            return None
        return state.result()   # raises what the flow raised


def show(result, as_json: bool) -> None:
    print(json.dumps(result.to_json(), indent=1, default=str) if as_json else "\n".join(result.lines()))


def add_parsers(sub) -> None:
    t = sub.add_parser("tune", help="search training settings (an Optuna study; trials tracked as MLflow child "
                                    "runs); the same command continues it",
                       description="an Optuna study of the training settings: each trial trains and evaluates "
                                   "(no registration) as an MLflow child run of the study's run; the study lives in "
                                   "./tune/optuna.db (or NERFLOW_TUNE_STORAGE), so the same command continues an "
                                   "interrupted study and several workers can share one (docs/tuning.md)")
    t.add_argument("config", type=Path)
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, as for `nerflow run`")
    t.add_argument("--trials", type=int, default=20, help="finished (complete or pruned) trials to reach "
                                                         "(default 20)")
    t.add_argument("--space", type=Path, metavar="FILE",
                   help="the search space, YAML: per config key {low, high[, log][, step]} or {choices: [...]} "
                        "(default: the task type's space, docs/tuning.md)")
    t.add_argument("--timeout", type=float, metavar="S", help="stop starting trials after S seconds")
    t.add_argument("--study", metavar="NAME", help="the study's name (default: from the model name, the config "
                                                   "and the space)")
    t.add_argument("--startup-trials", type=int, metavar="N",
                   help="random trials before TPE models the space (default: a third of --trials, 2 to 10)")
    t.add_argument("--pruner-startup-trials", type=int, default=2, metavar="N",
                   help="complete trials before the median pruner stops any (default 2)")
    t.add_argument("--warmup-epochs", type=int, default=1, metavar="N",
                   help="epochs a trial always runs before the pruner judges it (default 1)")
    t.add_argument("--register-best", action="store_true",
                   help="then run the pipeline with the best config: registration and the promotion gate")
    t.add_argument("--pool", metavar="POOL", help="run the study on this work pool's workers (deployment "
                                                  "nerflow-tune/STUDY), sharing NERFLOW_TUNE_STORAGE")
    t.add_argument("--workers", type=int, default=1, metavar="K",
                   help="with --pool: start K runs of the study, each pulling trials (default 1)")
    t.add_argument("--json", action="store_true", help="the study's result as JSON, for scripts")
    t.set_defaults(func=cmd_tune)
    c = sub.add_parser("curve", help="a learning curve: test score against the amount of labelled data",
                       description="train on seeded subsets of the training split (NER: whole documents; texts: "
                                   "stratified by label) and score each on the whole test split; each point an "
                                   "MLflow child run of the curve's run, which holds the table and the plot "
                                   "(docs/tuning.md)")
    c.add_argument("config", type=Path)
    c.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, as for `nerflow run`")
    c.add_argument("--fractions", default="0.01,0.05,0.1,0.25,0.5,1.0", metavar="F,...",
                   help="shares of the training split, each in (0, 1] (default 0.01,0.05,0.1,0.25,0.5,1.0)")
    c.add_argument("--seeds", type=int, default=3, help="subsets (and training seeds) per fraction (default 3)")
    c.add_argument("--baseline", action="store_true",
                   help="text classification: also TF-IDF + logistic regression on the same subsets")
    c.add_argument("--json", action="store_true", help="every point as JSON, for scripts")
    c.set_defaults(func=cmd_curve)
