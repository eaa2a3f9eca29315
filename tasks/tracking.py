"""MLflow at the edges: where the store is, the one run per pipeline run, and small logging helpers.

Everything logs through `MlflowClient` with an explicit run id, so nothing depends on which thread holds an
"active run".
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from nerflow import redact, run_label
from nerflow.config import PipelineConfig, config_hash, flatten, resolved_dict
from nerflow.prefect_tasks.liveness import HOST_TAG, process_tags  # noqa: F401 - HOST_TAG: read here by flows
from nerflow.progress import TrainingInterrupted

STORE_DIR = Path("mlruns")
LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "mlflow", "prefect", "great-expectations", "seqeval")


def default_uri() -> str:
    return f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the project's sqlite store `mlruns/mlflow.db`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def registry_id(uri: str | None = None) -> str:
    """The registry `uri` (default: the tracking URI, which nerflow also uses as the registry URI) names, spelled one
    way however it was written: a sqlite or file store by its absolute path, a server by scheme, host and port in
    lower case, without credentials, query or trailing slash. What a register output records as where its version
    is (tasks/register.py)."""
    from urllib.parse import urlsplit, urlunsplit

    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///').split('?')[0]).resolve()}"
    parts = urlsplit(uri)
    if uri in ("databricks", "databricks-uc", "uc"):   # MLflow's names without a scheme: not paths
        return uri
    if parts.scheme in ("", "file"):
        return Path(parts.path).resolve().as_uri()
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def configure() -> MlflowClient:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri()
    if uri == default_uri():
        STORE_DIR.mkdir(exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(uri, uri)


def artifact_root(uri: str) -> str | None:
    """A sqlite store keeps its artifacts next to the database file (`mlruns/artifacts` by default); a tracking
    server (http, PostgreSQL behind it) decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


# MLflow 3's UI opens an experiment in its GenAI view or its model-training view by this experiment tag (values in
# its UI bundle: custom_model_development, genai_development, and *_inferred variants it guesses when unset).
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if missing; marked a model-training experiment unless someone chose a kind."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if not exp.tags.get(EXPERIMENT_KIND_TAG):
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(client.tracking_uri),
                                        tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    except mlflow.exceptions.MlflowException as e:   # two first runs at once: the other one created it
        if e.error_code != "RESOURCE_ALREADY_EXISTS" and "already exists" not in str(e):
            raise
        return client.get_experiment_by_name(name).experiment_id


def user_name() -> str:
    """The MLflow user name when the server has authentication, else the OS user (else its uid: some containers)."""
    import getpass

    try:
        return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def data_name(cfg: PipelineConfig) -> str:
    """The data's short name (nerflow.run_label.data_name), as run names and the registered model's page show it."""
    return run_label.data_name(cfg.data.hf_dataset if cfg.data.format == "hf" else None,
                               str(Path(cfg.data.dir).resolve()), cfg.data.train)


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower() if commit != "unknown" else "unknown"}


def library_versions() -> dict[str, str]:
    return {f"lib.{name}": importlib.metadata.version(name) for name in LIBRARIES}


LOGICAL_RUN_TAG, ATTEMPTS_TAG = "nerflow.logical_run", "nerflow.attempts"
RUN_NAME_TAG = "mlflow.runName"


def find_logical_run(client: MlflowClient, experiment: str, logical_run: str):
    exp = client.get_experiment_by_name(experiment)
    runs = [] if exp is None else client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{LOGICAL_RUN_TAG}` = '{logical_run}'",
        order_by=["attributes.start_time DESC"], max_results=1)   # the newest one: one page suffices
    return runs[0] if runs else None


def open_run(client: MlflowClient, cfg: PipelineConfig, logical_run: str, flow_run_id: str | None,
             continue_run_id: str | None = None) -> str:
    """Continue the logical run's MLflow run if its last attempt did not finish (or `continue_run_id`, whatever its
    status: `nerflow rerun`); else start a new run with the flattened config as params and the resolved config as
    an artifact, their secrets masked (nerflow.redact)."""
    from nerflow.prefect_tasks import attempts  # run_record imports this module

    previous = client.get_run(continue_run_id) if continue_run_id else \
        find_logical_run(client, cfg.experiment, logical_run)
    if previous is not None and (continue_run_id or previous.info.status != "FINISHED"):
        run_id, attempt = previous.info.run_id, int(previous.data.tags.get(ATTEMPTS_TAG, "1")) + 1
        client.update_run(run_id, status="RUNNING")   # the run keeps its name: the same run, a new attempt
        # the newest flow-run ids in the tag, every one in the artifact (tasks/attempts.py: a tag has a cap)
        ids = attempts.record(client, run_id, attempt, flow_run_id, previous.data.tags)
        log_tags(client, run_id, {ATTEMPTS_TAG: attempt, **ids, LOGICAL_RUN_TAG: logical_run, **process_tags()})
        # the last attempt's failure is no longer the run's: gone, not set to "" (a missing tag reads as none)
        clear_tags(client, previous, ["error", "failed_stage", *([] if flow_run_id else [attempts.FLOW_RUN_TAG])])
        return run_id
    return new_run(client, cfg, logical_run, flow_run_id)


def new_run(client: MlflowClient, cfg: PipelineConfig, logical_run: str, flow_run_id: str | None,
            extra_tags: dict[str, str] | None = None) -> str:
    """A new MLflow run for `cfg`: its tags, the flattened config as params and the resolved config as an
    artifact, secrets masked. `extra_tags` (e.g. `mlflow.parentRunId` for a tuning trial) win."""
    from nerflow.prefect_tasks import attempts, run_record  # run_record imports this module

    tags = {"config_hash": config_hash(cfg), "task": cfg.task, "base_model": cfg.model.name_or_path,
            attempts.FLOW_RUN_TAG: flow_run_id, attempts.FLOW_RUNS_TAG: flow_run_id,
            LOGICAL_RUN_TAG: logical_run, ATTEMPTS_TAG: "1", **process_tags(),
            **git_state(), **library_versions(), **run_record.opening_tags(cfg), **(extra_tags or {})}
    tags = redact.mapping({k: v for k, v in tags.items() if v})   # no empty tags (no flow run: none of its id)
    run_id = client.create_run(experiment_id(client, cfg.experiment), tags=tags,
                               run_name=tags.pop(RUN_NAME_TAG)).info.run_id
    attempts.record(client, run_id, 1, flow_run_id)
    params = [Param(k, str(v)[:6000]) for k, v in redact.mapping(flatten(cfg)).items()]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    client.log_text(run_id, yaml.safe_dump(redact.mapping(resolved_dict(cfg)), sort_keys=False),
                    "config/resolved.yaml")
    return run_id


def attempt_of(client: MlflowClient, run_id: str) -> int:
    return int(client.get_run(run_id).data.tags.get(ATTEMPTS_TAG, "1"))


@contextlib.contextmanager
def pipeline_run(client: MlflowClient, cfg: PipelineConfig, logical_run: str, flow_run_id: str | None,
                 continue_run_id: str | None = None) -> Iterator[str]:
    """Open (or continue) the run; mark it FAILED with the error and failed stage as tags if a stage raises, KILLED
    if it was interrupted."""
    run_id = open_run(client, cfg, logical_run, flow_run_id, continue_run_id)
    try:
        yield run_id
    except BaseException as e:
        log_tags(client, run_id, {"error": f"{type(e).__name__}: {e}"[:5000]})
        # pre-empted (SIGTERM -> nerflow.progress.TrainingInterrupted) or stopped by hand: not broken
        stopped = isinstance(e, (KeyboardInterrupt, TrainingInterrupted))
        client.set_terminated(run_id, "KILLED" if stopped else "FAILED")
        raise
    # a stage that failed on a transient error and then passed on Prefect's retry tagged itself failed: not so
    clear_tags(client, client.get_run(run_id), ["failed_stage"])
    client.set_terminated(run_id, "FINISHED")


TRANSIENT_MARKERS = ("connection refused", "connection reset", "connection aborted", "max retries exceeded",
                     "temporarily unavailable", "timed out", "service unavailable", "bad gateway", "gateway timeout",
                     "too many 50", "database is locked")


def is_transient(exc: BaseException) -> bool:
    """Network trouble talking to MLflow or remote data: worth a retry. Bad data or config never is."""
    from nerflow.config import ConfigError
    from nerflow.data import DataError

    if isinstance(exc, TrainingInterrupted):
        return False
    if isinstance(exc, (ConfigError, DataError, ValueError, TypeError, KeyError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect retry condition: Prefect retries on any exception unless told otherwise."""
    try:
        state.result()
    except BaseException as e:  # noqa: BLE001 - the state holds whatever the task raised
        return is_transient(e)
    return False


def log_metrics(client: MlflowClient, run_id: str, values: dict[str, float], step: int = 0,
                timestamp_ms: int | None = None) -> None:
    now = timestamp_ms or int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
    for i in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[i:i + 500])


def regrouped(values: dict[str, float], group: str) -> dict[str, float]:
    """The training loop's metric names moved under a stage's own group, kept apart from fine-tuning's in the same
    run: `train/loss` -> `<group>/loss`, `val/loss` -> `<group>/val_loss` (pretrain, distill)."""
    out = {}
    for name, value in values.items():
        prefix, _, rest = name.partition("/")
        out[f"{group}/{rest}" if prefix == "train" else f"{group}/{prefix}_{rest}"] = value
    return out


def log_tags(client: MlflowClient, run_id: str, tags: dict[str, str | None]) -> None:
    """Set these tags; a None or empty value is left out: nerflow writes no empty tags (readers take a missing tag
    as none; `clear_tags` removes one). Secrets in them are masked (nerflow.redact): an error's text included."""
    batch = [RunTag(k, str(redact.value(k, str(v)))) for k, v in tags.items() if v is not None and str(v) != ""]
    if batch:
        client.log_batch(run_id, tags=batch)


def clear_tags(client: MlflowClient, run, keys: list[str]) -> None:
    """Delete those of `keys` the run (an MLflow Run as read) has."""
    for key in keys:
        if key in run.data.tags:
            client.delete_tag(run.info.run_id, key)


def log_json(client: MlflowClient, run_id: str, value: dict, artifact_file: str) -> None:
    client.log_text(run_id, redact.text(json.dumps(value, indent=2, default=str)), artifact_file)
