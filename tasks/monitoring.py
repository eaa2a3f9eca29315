"""The MLflow side of `nerflow drift`: where a version's reference profile is kept, and the monitoring run each check
logs. The numbers are nerflow.drift_profile's and the tests nerflow.drift's; nothing here computes.

A version's reference lives on the run that trained it, under `monitor/reference/` (`reference.npz/.json`: the
profile of a seeded share of the validation split's documents; `holdout.npz/.json`: the rest, kept to measure false
alarms). A version without one gets it computed once, from the version's own resolved config
(`config/resolved.yaml`), and logged there; a later check downloads it.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nerflow.config import ConfigError

REFERENCE_DIR = "monitor/reference"
EXPERIMENT = "nerflow-monitoring"
REPORT_DIR = "drift"
LABELLING_BATCH = "labelling/texts-to-label.jsonl"   # on a check's run when it found drift (nerflow.labelling)
log = logging.getLogger("nerflow.monitoring")


@dataclass(frozen=True)
class Version:
    """What a MODEL_URI names in the registry: a version (name, number, its run) or a run's model (name empty)."""

    name: str
    version: str
    run_id: str | None


def version_of(client: MlflowClient, uri: str) -> Version:
    """The registered version or the run a `models:/` or `runs:/` URI names; a local folder names neither."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    from nerflow.prefect_tasks.served_model import MISSING

    try:
        if uri.startswith("models:/"):
            named = get_model_name_and_version(client, uri)
            if len(named) == 2:
                name, number = named
                return Version(name, str(number), client.get_model_version(name, str(number)).run_id)
            return Version("", "", client.get_logged_model(named[0]).source_run_id)
    except MlflowException as e:
        if e.error_code in MISSING:
            raise ConfigError(f"{uri}: {e.message.splitlines()[0]}") from None
        raise
    if uri.startswith("runs:/"):
        return Version("", "", uri.removeprefix("runs:/").split("/", 1)[0])
    return Version("", "", None)


def stored_reference(client: MlflowClient, run_id: str, dst: Path) -> Path | None:
    """The reference folder logged on `run_id`, downloaded into `dst`; None when the run has none."""
    import mlflow

    names = {Path(f.path).name for f in client.list_artifacts(run_id, REFERENCE_DIR)}
    if "reference.npz" not in names:
        return None
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_DIR, dst_path=str(dst)))


def resolved_config(client: MlflowClient, run_id: str, overrides: list[str]):
    """The config the version was trained with, as logged by the nerflow that trained it."""
    import mlflow

    from nerflow.config import load_config

    with tempfile.TemporaryDirectory(prefix="nerflow-config-") as tmp:   # read, then removed: checks run hourly
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config/resolved.yaml",
                                                       dst_path=tmp)
        except MlflowException as e:
            raise ConfigError(f"run {run_id} logged no config/resolved.yaml ({e.message.splitlines()[0]}): its "
                              "reference cannot be computed; give the config it was trained with: --config FILE"
                              ) from None
        return load_config(path, overrides, resolved=True)


def keep_reference(client: MlflowClient, run_id: str, folder: Path) -> str | None:
    """Log a computed reference on the version's run; a store that refuses (a read-only role) costs a warning: the
    next check computes it again. The warning's text, or None."""
    try:
        client.log_artifacts(run_id, str(folder), REFERENCE_DIR)
        return None
    except Exception as e:  # noqa: BLE001 - any refusal: the check itself does not depend on keeping it
        said = f"the reference could not be kept on run {run_id} ({type(e).__name__}: {str(e)[:200]}); the next " \
               "check computes it again"
        log.warning(said)
        return said


def log_check(client: MlflowClient, model_uri: str, version: Version, record: dict, report: Path,
              input_label: str, experiment: str = EXPERIMENT, labelling: list[dict] | None = None,
              finish: bool = True) -> str:
    """One run in the monitoring experiment: the decision as tags and metrics, `drift/report.{json,html}`, linked
    to the version by tags (nerflow.model_name / nerflow.model_version / nerflow.model_run), and the texts to label
    first as `labelling/texts-to-label.jsonl` when drift was found. Its id. Left running when not `finish`: the
    monitoring flow ends it once its event is out (a run left running by a crash counts as no check)."""
    from mlflow.entities import Metric, Param

    from nerflow.prefect_tasks import tracking

    tags = {"mlflow.runName": f"drift {version.name or model_uri} {'v' + version.version if version.version else ''}"
            .strip(), "nerflow.model_uri": model_uri, "nerflow.drift": str(record["drift"]).lower()}
    if version.name:
        tags |= {"nerflow.model_name": version.name, "nerflow.model_version": version.version}
    if version.run_id:
        tags["nerflow.model_run"] = version.run_id
    run = client.create_run(tracking.experiment_id(client, experiment), tags=tags)
    run_id = run.info.run_id
    step_ms = int(run.info.start_time)
    metrics = [Metric("drift/detected", float(record["drift"]), step_ms, 0),
               Metric("drift/texts", float(record["texts"]), step_ms, 0),
               Metric("drift/labelling_texts", float(len(labelling or [])), step_ms, 0)]
    for check in record["checks"]:
        if check["statistic"] is None or check["p_value"] is None:   # a check that could not run: nothing to plot
            continue
        key = check["name"].replace(":", "/")
        metrics += [Metric(f"drift/{key}/statistic", float(check["statistic"]), step_ms, 0),
                    Metric(f"drift/{key}/p_value", float(check["p_value"]), step_ms, 0)]
    try:
        client.log_batch(run_id, metrics=metrics, params=[Param("model_uri", model_uri),
                                                          Param("input", input_label[:500]),
                                                          Param("rule", record["rule"][:500])])
        client.log_artifacts(run_id, str(report), REPORT_DIR)
        if labelling:
            client.log_text(run_id, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in labelling),
                            LABELLING_BATCH)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    if finish:
        client.set_terminated(run_id, "FINISHED")
    return run_id


def last_check(client: MlflowClient, version: Version, experiment: str = EXPERIMENT):
    """The latest finished check of this registered version (an MLflow run), or None."""
    found = client.get_experiment_by_name(experiment)
    if found is None or not version.name:
        return None
    runs = client.search_runs([found.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.`nerflow.model_name` = '{_quoted(version.name)}' and "
                                            f"tags.`nerflow.model_version` = '{version.version}' and "
                                            "attributes.status = 'FINISHED'")
    return runs[0] if runs else None


def open_drift(client: MlflowClient, model_name: str, since_ms: int, experiment: str = EXPERIMENT):
    """The latest finished check of any version of `model_name` started after `since_ms` (epoch ms), when it found
    drift; else None. What a retraining run with unchanged labelled data reports (flows/scheduled.py)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.`nerflow.model_name` = '{_quoted(model_name)}' and "
                                            f"attributes.start_time > {int(since_ms)} and "
                                            "attributes.status = 'FINISHED'")
    return runs[0] if runs and runs[0].data.tags.get("nerflow.drift") == "true" else None


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
