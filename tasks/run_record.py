"""What a pipeline run's MLflow page shows besides params and metrics: its name, who started it and how ("Created
by", "Source"), a description, system metrics while it runs, and its log file per attempt.

Context managers and helpers that `flows/pipeline.py` wraps around the stages; each is independent of the others.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from mlflow import MlflowClient

from nerflow import redact, run_label
from nerflow.config import PipelineConfig
from nerflow.outputs import Registered, RunResult
from nerflow.prefect_tasks.tracking import (
    RUN_NAME_TAG,
    attempt_of,
    data_name,
    git_state,
    log_tags,
    tracking_uri,
    user_name,
)

log = logging.getLogger("nerflow.tracking")
NOTE_TAG = "mlflow.note.content"   # the run page's "Description"
COMMAND_TAG = "nerflow.command"    # the whole command line (the Source shows it shortened)
SYSTEM_METRICS_INTERVAL_S = 10.0


def opening_tags(cfg: PipelineConfig) -> dict[str, str]:
    """Tags of a new run: its name, its source, and a description that the end of the run completes."""
    schedule = schedule_name()
    return {RUN_NAME_TAG: run_name(cfg, schedule), **source_tags(schedule), NOTE_TAG: run_description(cfg, {}, None)}


def run_name(cfg: PipelineConfig, schedule: str | None, started: datetime | None = None) -> str:
    """What the runs table calls the run (nerflow.run_label): model, data, seed or schedule, start time."""
    return run_label.run_name(cfg.model.name_or_path, data_name(cfg), cfg.seed, started or datetime.now(UTC),
                              schedule)


def schedule_name() -> str | None:
    """The Prefect deployment (a `nerflow schedule`) whose flow run this process runs, or None. A worker and
    `nerflow serve` start each such flow run in a process with PREFECT__FLOW_RUN_ID set; a nested flow run (the
    pipeline under `nerflow-scheduled`) inherits the deployment from its parent."""
    if not os.environ.get("PREFECT__FLOW_RUN_ID"):
        return None
    try:
        from prefect.runtime import deployment

        return deployment.get_name()
    except Exception as e:  # noqa: BLE001 - a nicety: the Prefect server's answer names the run, nothing more
        log.warning("could not read this flow run's deployment name: %s", e)
        return None


def source_tags(schedule: str | None = None) -> dict[str, str]:
    """MLflow's reserved tags behind the run page's "Created by" and "Source": the user, the command, the source
    type, and the git commit. MLflow's UI shows a JOB source in full and a LOCAL one only from its last `/` on
    (nerflow.run_label): a run a schedule started is JOB, `nerflow schedule NAME`; a command at a terminal is
    LOCAL, its command line with paths cut to file names (the full one is the tag `nerflow.command`)."""
    import shlex
    import sys

    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    flow_run = os.environ.get("PREFECT__FLOW_RUN_ID")
    # a worker's process runs Prefect's engine: its command line says nothing; the flow run id at least finds it
    argv = [redact.text(arg) for arg in sys.argv]   # masked before paths are cut: `https://u:***@host/x` -> `x`
    source = run_label.source_name(argv, schedule) if schedule or not flow_run else f"Prefect flow run {flow_run}"
    tags = {MLFLOW_USER: user_name(), MLFLOW_SOURCE_NAME: source, MLFLOW_SOURCE_TYPE: "JOB" if flow_run else "LOCAL",
            COMMAND_TAG: shlex.join(argv)[:5000]}
    commit = git_state()["git_commit"]
    return {**tags, MLFLOW_GIT_COMMIT: commit} if commit != "unknown" else tags


def run_description(cfg: PipelineConfig, metrics: dict[str, float], result: RunResult | None) -> str:
    """The run's description (Markdown): data, base model, and once known the scores and registered version."""
    from nerflow import task_types

    kind = task_types.get(cfg.task)
    data = cfg.data.hf_dataset if cfg.data.format == "hf" and cfg.data.hf_dataset else cfg.data.dir
    sizes = "/".join(f"{int(metrics[f'data/{kind.unit}_{s}']):,}" for s in ("train", "validation", "test")
                     if f"data/{kind.unit}_{s}" in metrics)
    lines = [f"{cfg.task}: `{cfg.model.name_or_path}` fine-tuned on `{data}`"
             + (f" ({sizes} {kind.unit} train/validation/test)" if sizes.count("/") == 2 else "") + "."]
    if "test/f1" in metrics:
        best = f" (epoch {int(metrics['train/best_epoch'])})" if "train/best_epoch" in metrics else ""
        lines.append(f"Validation F1 {metrics.get('val/best_f1', float('nan')):.4f}{best}, "
                     f"test F1 {metrics['test/f1']:.4f} ({kind.headline}).")
    registered = next((o for o in (result.outputs.values() if result else ()) if isinstance(o, Registered)), None)
    if registered:
        what = "registered" if registered.new_version else "same as"
        lines.append(f"{what.capitalize()} `{registered.model_name}` version {registered.version}"
                     + (f" (@{registered.alias})." if registered.alias else "."))
    return "\n\n".join(lines)


def describe_run(client: MlflowClient, run_id: str, cfg: PipelineConfig, result: RunResult | None) -> None:
    """Set the description from what the run has logged so far (called at the end, when scores are known)."""
    log_tags(client, run_id, {NOTE_TAG: run_description(cfg, client.get_run(run_id).data.metrics, result)})


@contextlib.contextmanager
def system_metrics(run_id: str, interval_s: float = SYSTEM_METRICS_INTERVAL_S) -> Iterator[None]:
    """MLflow's `system/*` metrics (CPU, memory, disk, network; GPU when pynvml finds one) sampled every
    `interval_s` while the block runs. A continued run's samples go on from its last step. The sampler is a daemon
    thread and stopping it waits at most 10 s, so neither Ctrl-C nor an unreachable server holds the process."""
    import threading

    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    try:
        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True,
                                       tracking_uri=tracking_uri())
        monitor.start()
    except Exception as e:  # noqa: BLE001 - monitoring is a nicety: never the reason a run fails
        log.warning("no system metrics for this run: %s", e)
        monitor = None
    try:
        yield
    finally:
        if monitor is not None:
            stopper = threading.Thread(target=monitor.finish, name="stop-system-metrics", daemon=True)
            stopper.start()
            stopper.join(timeout=10)


@contextlib.contextmanager
def run_log(client: MlflowClient, run_id: str) -> Iterator[Path]:
    """Everything logged while the block runs (root logger, INFO and up) goes to a file that becomes the run's
    artifact `logs/<attempt>.log` when the block ends, failed or not: one file per attempt of a continued run.
    nerflow's own loggers log INFO for the block even where the host program (a test, a notebook) left them at
    WARNING: the file is the record of the run, whatever the console shows."""
    import tempfile

    attempt = attempt_of(client, run_id)
    folder = Path(tempfile.mkdtemp(prefix="nerflow-log-"))
    path = folder / f"{attempt}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    # the console's format with the date: a log file outlives the day it was written
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(redact.LogFilter())   # also where no `nerflow` command masked the records (a notebook)
    root, ours = logging.getLogger(), logging.getLogger("nerflow")
    level = ours.level
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        ours.setLevel(level)
        handler.close()
        try:
            client.log_artifact(run_id, str(path), "logs")
        except Exception as e:  # noqa: BLE001 - losing the log must not hide the run's own outcome
            # one line: when the server is gone the command reports that once, in full, itself
            log.warning("could not upload the run log (it stays at %s): %s", path, str(e).splitlines()[0][:160])
        else:
            path.unlink(missing_ok=True)
            folder.rmdir()
