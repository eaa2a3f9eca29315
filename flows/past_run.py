"""A past pipeline run to continue: found by its MLflow run id or a Prefect flow-run id of one of its attempts, with
exactly the resolved config it logged. What `nerflow rerun` (flows/commands/run.py) and the `nerflow-rerun` flow
(flows/rerun.py, the Prefect UI's route) both start from.

No Prefect and no torch here: `nerflow rerun --dry-run` stays cheap.
"""
from __future__ import annotations

import difflib
import logging
import re
import tempfile
from dataclasses import dataclass

from nerflow.config import ConfigError, PipelineConfig

log = logging.getLogger("nerflow.cli")


@dataclass(frozen=True)
class PastRun:
    run: object            # the MLflow run (mlflow.entities.Run)
    cfg: PipelineConfig    # its `config/resolved.yaml`, loaded as `nerflow rerun` loads it

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def status(self) -> str:
        return self.run.info.status

    @property
    def host(self) -> str | None:
        """The host whose process ran the latest attempt (tag `nerflow.host`): its stage cache holds that
        attempt's outputs. None for a run logged without the tag."""
        from nerflow.prefect_tasks.tracking import HOST_TAG

        return self.run.data.tags.get(HOST_TAG) or None


def check_stage(stage: str | None) -> None:
    """A stage of the pipeline graph, or None (the first stage not done); anything else is bad input."""
    from nerflow.graph import PIPELINE

    if stage is None or stage in PIPELINE.all_names:
        return
    close = difflib.get_close_matches(str(stage), PIPELINE.all_names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"no stage {stage!r}{hint}: the stages are {', '.join(PIPELINE.all_names)}")


def load(run_or_flow_id: str, from_stage: str | None = None) -> PastRun:
    """The pipeline run to continue and exactly its resolved config. Bad input (an unknown stage, an id matching no
    run or several, a resolved config this code cannot use) raises ConfigError before anything is written; the
    stage is checked first, before any server is asked."""
    import mlflow

    from nerflow.config import load_config
    from nerflow.prefect_tasks import tracking

    check_stage(from_stage)
    client = tracking.configure()
    reap_dead_runs()
    run = find_run(client, run_or_flow_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="config/resolved.yaml",
                                                   dst_path=tmp)
        refuse_masked(run.info.run_id, path)
        cfg = load_config(path, resolved=True)
    check_stage_of(run.info.run_id, cfg, from_stage)
    return PastRun(run, cfg)


def check_stage_of(run_id: str, cfg, stage: str | None) -> None:
    """An optional stage that was off in the run cannot be where it continues from (its config is kept as logged)."""
    from nerflow.graph import PIPELINE

    if stage is None or stage in PIPELINE.active(cfg).names:
        return
    when = next(s.when for s in PIPELINE.optional if s.name == stage)   # only an optional stage can be off
    raise ConfigError(f"run {run_id} has no stage {stage!r}: {when} was off in its config (start a new run with "
                      f"`nerflow run CONFIG {when}=true`)")


def refuse_masked(run_id: str, path: str) -> None:
    """A config logged with a secret masked (nerflow.redact) cannot run again as logged: bad input that names the
    keys, not a run against `https://user:***@host`."""
    import yaml

    from nerflow.redact import MASK

    def walk(prefix: str, node) -> list[str]:
        if isinstance(node, dict):
            return [k for key, value in node.items() for k in walk(f"{prefix}{key}.", value)]
        return [prefix[:-1]] if MASK in str(node) else []

    with open(path, encoding="utf-8") as f:
        masked = walk("", yaml.safe_load(f) or {})
    if masked:
        raise ConfigError(f"run {run_id}: its logged config has a secret masked in {', '.join(masked)}; run its "
                          "config again with `nerflow run CONFIG` and the secret set (docs/cli.md, \"Secrets\")")


def find_run(client, run_or_flow_id: str):
    """The pipeline run with this MLflow run id, or whose attempts include this Prefect flow-run id: exactly one,
    matched whole (no substring guessing); none or several is bad input."""
    from mlflow.exceptions import MlflowException

    from nerflow.prefect_tasks.tracking import LOGICAL_RUN_TAG

    wanted = str(run_or_flow_id).strip()
    if not re.fullmatch(r"[0-9A-Za-z-]{8,64}", wanted):
        raise ConfigError(f"{run_or_flow_id!r} is not an MLflow run id or a Prefect flow-run id")
    try:
        run = client.get_run(wanted)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    else:
        if LOGICAL_RUN_TAG not in run.data.tags:
            raise ConfigError(f"MLflow run {wanted} is not a nerflow pipeline run (no {LOGICAL_RUN_TAG} tag)")
        return run
    # a continued run has several attempts: the newest flow-run ids are in a tag, all of them in an artifact
    from nerflow.prefect_tasks import attempts

    found = attempts.runs_of_flow_run(client, wanted)
    if not found:
        raise ConfigError(f"no pipeline run with MLflow run id or Prefect flow-run id {wanted!r} (see `nerflow runs`)")
    if len(found) > 1:
        raise ConfigError(f"Prefect flow-run id {wanted!r} belongs to {len(found)} MLflow runs "
                          f"({', '.join(r.info.run_id for r in found)}): give the MLflow run id")
    return found[0]


def reap_dead_runs() -> None:
    """Runs left RUNNING by a process that died (kill -9) are marked KILLED, and their orphaned temporary Prefect
    servers stopped, by the next nerflow command on the host."""
    from nerflow.flows.prefect_server import stop_orphans
    from nerflow.prefect_tasks import liveness, tracking

    stop_orphans()
    for run_id in liveness.reap_dead_runs(tracking.configure()):
        log.warning("run %s was left RUNNING by a process on this host that ended without closing it (killed, or "
                    "the tracking server was unreachable): marked KILLED; the same command, or `nerflow rerun %s`, "
                    "continues it", run_id, run_id)


def stopped_stage(client, run) -> str | None:
    """The stage an unfinished run stopped in: its `failed_stage` tag (the stage raised, or took a Ctrl-C), else,
    for a run killed outright (kill -9: marked KILLED by a later command, no stage could tag itself), the first
    stage of the graph that its latest attempt did not finish: each finished stage logs `stage/<name>_seconds` at
    the attempt's step. None for a run that finished or still runs."""
    from nerflow import graph
    from nerflow.prefect_tasks.tracking import ATTEMPTS_TAG

    tagged = run.data.tags.get("failed_stage") or None
    if tagged or run.info.status != "KILLED":
        return tagged
    attempt = int(run.data.tags.get(ATTEMPTS_TAG, "1"))
    return next((name for name in graph.PIPELINE.run_names(graph.logged_on(run.data.params))
                 if not finished_in(client, run, name, attempt)), None)


def finished_in(client, run, stage: str, attempt: int) -> bool:
    """Whether `attempt` finished `stage`. Its tag `stage.<name>` alone may be an earlier attempt's; only then is
    the stage's timing metric asked for a point at the attempt's step."""
    if not run.data.tags.get(f"stage.{stage}"):
        return False
    return attempt == 1 or any(m.step == attempt for m in
                               client.get_metric_history(run.info.run_id, f"stage/{stage}_seconds"))


def superseded_by(client, run, experiments: list[str] | None = None) -> str | None:
    """For a failed or killed run: the newest other run of the same logical run (same data, settings and code; tag
    nerflow.logical_run) that finished after this one started, in any of `experiments` (default: all). Continuing
    this run would find every stage done: there is nothing left to continue."""
    from nerflow.prefect_tasks.tracking import LOGICAL_RUN_TAG

    logical_run = run.data.tags.get(LOGICAL_RUN_TAG)
    if run.info.status not in ("FAILED", "KILLED") or not logical_run:
        return None
    if experiments is None:
        from nerflow.prefect_tasks import mlflow_pages

        experiments = mlflow_pages.experiment_ids(client)
    finished = client.search_runs(experiments, f"tags.`{LOGICAL_RUN_TAG}` = '{logical_run}' and "
                                               "attributes.status = 'FINISHED'",
                                  order_by=["attributes.end_time DESC"], max_results=10)
    return next((r.info.run_id for r in finished if r.info.run_id != run.info.run_id
                 and (r.info.end_time or 0) > run.info.start_time), None)
