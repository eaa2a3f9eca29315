"""`nerflow schedule`: create, replace, list, pause, resume, delete schedules (flows/commands/runners.py: the
`nerflow serve` and `nerflow worker` processes that run them).

    nerflow schedule CONFIG [key=value ...] (--cron EXPR [--timezone TZ] | --interval SECONDS) [--name NAME] [--pool P]
    nerflow schedule CONFIG [key=value ...] --monitor INPUT [--model URI] (--cron EXPR | --interval SECONDS) ...
    nerflow schedule ls [--json]
    nerflow schedule pause|resume|delete NAME

With --monitor, the cadence is a drift check's (flows/monitor_flow.py, deployment nerflow-monitor/NAME) and the
retraining deployment nerflow-scheduled/NAME runs when the check's drift event fires (a Prefect trigger), its runs
queued behind a running one. Schedules live on the Prefect server named by PREFECT_API_URL (flows/deployments.py);
without one every command here fails at once with the commands that start one.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ACTIONS = ("ls", "pause", "resume", "delete")


def cmd_schedule(args: argparse.Namespace) -> int:
    from nerflow.config import ConfigError
    from nerflow.flows import deployments, schedule_rows

    if args.config in ACTIONS:
        deployments.require_server()
        return schedule_action(args.config, args.overrides, args.json)
    if args.cron is None and args.interval is None:
        raise ConfigError("a schedule needs --cron EXPR or --interval SECONDS")
    if args.timezone and not args.cron and args.interval is None:
        raise ConfigError("--timezone goes with --cron")
    cadence = deployments.Cadence(cron=args.cron, interval_s=args.interval, timezone=args.timezone)
    check_cadence(cadence)
    config = Path(args.config)
    from nerflow.config import load_config

    workdir = str(Path(args.workdir).resolve()) if args.workdir else str(Path.cwd())
    # what a worker will check before it runs it (flows/deploy_checks.py), with the workdir as the only root
    deployments.check_parameters(str(config), args.overrides, workdir)
    cfg = load_config(config, args.overrides)   # bad config or override: refused now, not at 3 a.m.
    refuse_unpinned_hub_ids(cfg)
    name = args.name or re.sub(r"[^A-Za-z0-9_-]", "-", config.stem)
    if args.monitor is not None:   # "" when given without INPUT
        return schedule_monitor(args, cfg, name, str(config), workdir, cadence)
    if args.model is not None:
        raise ConfigError("--model goes with --monitor (the version a drift check watches)")
    deployments.require_server()
    deployment_id, created = deployments.apply(name, str(config), args.overrides, workdir, cadence, args.pool,
                                               args.collision)
    row = next(r for r in schedule_rows.rows() if r["name"] == name and r["kind"] == "retrain")
    if args.json:
        print(json.dumps({**row, "created": created}, indent=1))
        return 0
    runs_on = f"`prefect worker start --pool {args.pool}` (from {workdir})" if args.pool else \
        f"`nerflow serve {name}` (from {workdir})"
    print(f"{'created' if created else 'updated'} schedule {name} ({deployment_id}): {row['schedule']}, "
          f"next run {row['next_run'] or '(being scheduled)'}\n"
          f"runs execute on {runs_on}; runs never overlap (a run due while one trains is "
          f"{'queued' if row['collision'] == 'enqueue' else 'cancelled'})")
    return 0


def capture_folder() -> str:
    """`--monitor` without INPUT: the capture folder this environment's served model writes (nerflow.capture)."""
    import os

    from nerflow.capture import DIR_ENV
    from nerflow.config import ConfigError

    folder = os.environ.get(DIR_ENV, "").strip()
    if not folder:
        raise ConfigError(f"--monitor without INPUT checks the capture folder of {DIR_ENV}, which is not set here: "
                          "give the folder (or file) to check, e.g. --monitor captured/ner")
    return folder


def schedule_monitor(args, cfg, name: str, config: str, workdir: str, cadence) -> int:
    """`--monitor INPUT`: the drift check on the cadence, and the retraining deployment its drift event starts."""
    from nerflow.config import ConfigError
    from nerflow.flows import deployments, monitor_deployments, schedule_rows

    if args.collision == "cancel_new":
        raise ConfigError("--collision cancel_new with --monitor: a retraining run its drift event starts while one "
                          "trains would be cancelled, and the drift not acted on; runs are queued (enqueue)")
    model_uri = args.model or f"models:/{cfg.registry.model_name}@{cfg.promote.alias}"
    source = args.monitor or capture_folder()
    monitor_overrides = [o for o in args.overrides if o.partition("=")[0].strip().startswith("monitor.")]
    # what a worker will check before it runs it, with the workdir as the only root
    monitor_deployments.check_monitor_parameters(model_uri, source, monitor_overrides, workdir)
    if not (Path(workdir) / source).exists():
        print(f"warning: {source} does not exist yet (under {workdir}): each check fails until it does (a capture "
              "folder is created by the first captured request: NERFLOW_CAPTURE_DIR)", file=sys.stderr)
    model_name = monitor_deployments.model_name_of(model_uri)
    deployments.require_server()
    monitor_id, monitor_created = monitor_deployments.apply_monitor(name, model_uri, source, monitor_overrides,
                                                                    workdir, cadence, args.pool)
    retrain_id, retrain_created = deployments.apply(name, config, args.overrides, workdir, None, args.pool,
                                                    "enqueue", on_drift_of=model_name)
    rows = [r for r in schedule_rows.rows() if r["name"] == name]
    if args.json:
        print(json.dumps({"monitor": {**next(r for r in rows if r["kind"] == "monitor"), "created": monitor_created},
                          "retrain": {**next(r for r in rows if r["kind"] == "retrain"),
                                      "created": retrain_created}}, indent=1))
        return 0
    monitor = next(r for r in rows if r["kind"] == "monitor")
    runs_on = f"`nerflow worker --pool {args.pool}`" if args.pool else f"`nerflow serve {name}`"
    print(f"{'created' if monitor_created else 'updated'} drift check {name} ({monitor_id}): {model_uri} on "
          f"{source}, {monitor['schedule']}, next run {monitor['next_run'] or '(being scheduled)'}\n"
          f"{'created' if retrain_created else 'updated'} retraining {name} ({retrain_id}) of {config}: started by "
          f"the event nerflow.drift.detected of {model_name}, runs queued behind a running one\n"
          f"both run on {runs_on} (from {workdir})")
    return 0


def refuse_unpinned_hub_ids(cfg) -> None:
    """A schedule reruns for years: a hub model or dataset named by a branch (main) would retrain on whatever the
    hub holds that night. Refused unless pinned to a commit (the error names the key and, when it can be resolved
    here, today's commit to pin)."""
    from nerflow import data_identity, models
    from nerflow.config import ConfigError

    hub = []
    if models.is_hub_id(cfg.model.name_or_path, cfg.cache_dir) and not data_identity.is_pinned(cfg.model.revision):
        hub.append(("model.revision", cfg.model.name_or_path, "model"))
    if cfg.data.format == "hf" and cfg.data.hf_dataset and not Path(cfg.data.hf_dataset).expanduser().is_dir() \
            and not data_identity.is_pinned(cfg.data.hf_revision):
        hub.append(("data.hf_revision", cfg.data.hf_dataset, "dataset"))
    for key, repo, kind in hub:
        try:
            now = f" (today: {key}={data_identity.resolve_hub_revision(repo, None, repo_type=kind)})"
        except ConfigError:
            now = ""
        raise ConfigError(f"{repo!r} is a hub {kind} without a pinned commit: a schedule would train on whatever "
                          f"the hub holds when it runs; set {key} to a 40-character commit{now}")


def check_cadence(cadence) -> None:
    from pydantic import ValidationError

    from nerflow.config import ConfigError

    if cadence.interval_s is not None and cadence.interval_s <= 0:
        raise ConfigError(f"--interval {cadence.interval_s:g}: must be a positive number of seconds")
    try:
        cadence.schedule()
    except ValidationError as e:
        problem = e.errors()[0]
        option = "timezone" if "timezone" in problem["loc"] or "timezone" in problem["msg"].lower() else "cron"
        value = cadence.timezone if option == "timezone" else cadence.cron
        raise ConfigError(f"--{option} {value!r}: {problem['msg'].removeprefix('Value error, ')}") from None


def schedule_action(action: str, names: list[str], as_json: bool) -> int:
    from nerflow.config import ConfigError
    from nerflow.flows import deployments, schedule_rows

    if action == "ls":
        rows = with_error_lines(schedule_rows.rows())
        if as_json:
            print(json.dumps(rows, indent=1))
            return 0
        if not rows:
            print("no schedules (create one: nerflow schedule CONFIG --interval SECONDS)")
        for r in rows:
            state = "paused" if r["paused"] else "active" if r["active"] or r["triggers"] else "paused"
            what = f"checks {r['model']} on {r['input']}" if r["kind"] == "monitor" else \
                f"config {r['config']} {' '.join(r['overrides'])}".rstrip()
            started_by = f"; started by the automation {'; '.join(r['triggers'])}" if r["triggers"] else ""
            print(f"{r['name']:<20} {r['kind']:<7} {state:<7} {r['schedule'] or '-':<28} runs on {r['runs_on']}\n"
                  f"{'':<20} {what}{started_by}\n"
                  f"{'':<20} next {r['next_run'] or '-'}; last {last_outcome(r['last_run'])}")
        from nerflow.flows import runner

        print(runner.rerun_line())
        return 0
    if len(names) != 1:
        raise ConfigError(f"nerflow schedule {action} takes one schedule name (see `nerflow schedule ls`)")
    if action == "delete":
        deployments.delete(names[0])
        print(f"deleted schedule {names[0]} (its registered models and MLflow runs stay)")
    else:
        deployments.set_paused(names[0], action == "pause")
        print(f"{action}d schedule {names[0]}")
    return 0


def with_error_lines(rows: list[dict]) -> list[dict]:
    """Each failed last run gets `error`: the one line its run printed (flows/scheduled.py keeps it as the flow
    run's label); None for a run that failed before it could say (a crash) or with an older nerflow."""
    failed = [r["last_run"] for r in rows if r["last_run"] and r["last_run"]["state"] not in ("Completed",
                                                                                              "Cancelled")]
    if not failed:
        return rows
    from prefect.client.orchestration import get_client

    from nerflow.flows.scheduled import ERROR_LABEL

    with get_client(sync_client=True) as client:
        for last in failed:
            last["error"] = client.read_flow_run(last["flow_run_id"]).labels.get(ERROR_LABEL)
    return rows


def last_outcome(last: dict | None) -> str:
    """`State: message` on one line: a failed run's error line, not the exception Prefect keeps as its message."""
    if not last:
        return "-"
    said = last.get("error") or ((last["message"] or "").strip().splitlines() or [""])[0]
    return f"{last['state']}: {said}"


def add_parsers(sub) -> None:
    schedule = sub.add_parser(
        "schedule", help="create or replace a schedule of the pipeline; ls, pause, resume, delete",
        usage="nerflow schedule CONFIG [key=value ...] (--cron EXPR [--timezone TZ] | --interval SECONDS) "
              "[--name NAME] [--pool POOL] [--monitor INPUT [--model URI]]\n       nerflow schedule ls [--json]\n"
              "       nerflow schedule pause|resume|delete NAME",
        description="Schedules live on the Prefect server of PREFECT_API_URL. A scheduled run retrains only when "
                    "the configured data files, the config or the code changed; otherwise it ends in seconds as "
                    "'nothing to do'. Scheduling a name again replaces its schedule.")
    schedule.add_argument("config", help="the pipeline config (YAML), or ls / pause / resume / delete")
    schedule.add_argument("overrides", nargs="*", help="key=value overrides; for pause/resume/delete: the NAME")
    when = schedule.add_mutually_exclusive_group()
    when.add_argument("--cron", help="cron expression, e.g. '0 3 * * *' (03:00 every day)")
    when.add_argument("--interval", type=float, help="seconds between runs (with the cheap 'nothing changed' "
                                                     "check: the way to retrain when data lands)")
    schedule.add_argument("--timezone", help="IANA time zone of --cron (default UTC)")
    schedule.add_argument("--name", help="schedule name (default: the config file's stem)")
    schedule.add_argument("--pool", help="a process work pool whose workers run it (created if missing); "
                                         "default: `nerflow serve` runs it")
    schedule.add_argument("--workdir", help="the checkout runs read relative paths from (default: here)")
    schedule.add_argument("--collision", choices=("cancel_new", "enqueue"),
                          help="a run due while the previous one still runs: cancelled (default) or queued "
                               "(always, with --monitor)")
    schedule.add_argument("--monitor", metavar="INPUT", nargs="?", const="",
                          help="schedule a drift check of the model on INPUT (a capture folder or a file, inside the "
                               "workdir; default: $NERFLOW_CAPTURE_DIR) instead, and have its drift event start "
                               "this config's retraining (docs/monitoring.md)")
    schedule.add_argument("--model", metavar="URI",
                          help="with --monitor: the version to check (default models:/<registry.model_name>@"
                               "<promote.alias>)")
    schedule.add_argument("--json", action="store_true", help="machine-readable output, for scripts")
    schedule.set_defaults(func=cmd_schedule)
