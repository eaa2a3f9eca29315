"""The monitoring flow (`nerflow-monitor`): a scheduled drift check of a registered version, which tells Prefect when
the text it reads has moved away from what it was validated on.

`nerflow schedule CONFIG --monitor INPUT` deploys it (flows/deployments.py) next to the retraining deployment of the
same name, whose trigger waits for this flow's event; prefect.yaml has the same pair for `prefect deploy`. Each run:

1. checks its parameters (deploy_guard: a `models:/` URI, an input inside the worker's roots, `monitor.*` overrides);
2. runs the check (flows/drift_check.py) on the input (a capture folder, nerflow.capture, or a file), logged as a run
   in the MLflow experiment `nerflow-monitoring` with its report and, on drift, the texts to label first;
3. shows it as a Prefect artifact (key `<model>-drift`) on the flow run;
4. when the version's decision changes from no drift (or no check yet) to drift, emits the Prefect event
   `nerflow.drift.detected` (resource `nerflow.model.<name>`, the evidence in its payload) and marks the check with
   the event's id (`nerflow.drift.event`). A check that finds drift again carries the id forward and emits nothing:
   one event per drift episode, whatever the schedule's cadence. A check that finds no drift ends the episode.

The check's MLflow run stays RUNNING until the event is out and marked; a crash in between leaves a run that is not
FINISHED, which the next check does not count, so it emits again: at least once, never lost. Retraining twice on one
episode costs a "nothing to do" (flows/scheduled.py), losing the event would cost the loop.
"""
from __future__ import annotations

import contextlib
import os

from prefect import flow
from prefect.states import Completed

from nerflow.flows import interrupts
from nerflow.flows.errors import MLFLOW_HTTP_BOUNDS

FLOW_NAME = "nerflow-monitor"
EVENT = "nerflow.drift.detected"
EVENT_TAG = "nerflow.drift.event"   # on a check's MLflow run: the id of its drift episode's event


def resource_id(model_name: str) -> str:
    """The event's resource: the registered model (every version of it), what a retraining trigger matches."""
    return f"nerflow.model.{model_name}"


@flow(name=FLOW_NAME, log_prints=False)
def monitor_drift(model: str, input: str, overrides: list[str] | None = None, workdir: str | None = None):  # noqa: A002
    """Check the texts of `input` (a file, or a folder such as a capture folder) against the reference of `model`
    (models:/NAME@ALIAS or models:/NAME/VERSION); emit `nerflow.drift.detected` when drift starts. `overrides`:
    monitor.* settings; `workdir`: the checkout relative paths are read from."""
    with interrupts.ignored_after_the_body():   # serve's Ctrl-C after the run ended: no traceback
        from nerflow.flows.console import quiet_libraries, quiet_prefect_failures
        from nerflow.flows.scheduled import report_failure

        quiet_libraries()
        quiet_prefect_failures()
        for key, value in MLFLOW_HTTP_BOUNDS.items():
            os.environ.setdefault(key, value)
        try:
            return _check_and_signal(model, input, list(overrides or []), workdir)
        except Exception as e:
            report_failure(e)
            raise


def _check_and_signal(model: str, source: str, overrides: list[str], workdir: str | None):
    from nerflow.config import ConfigError
    from nerflow.flows import drift_check
    from nerflow.flows.commands.run import browse_hint
    from nerflow.flows.deploy_checks import check_monitor_run
    from nerflow.prefect_tasks import artifacts, monitoring, tracking

    checked = check_monitor_run(model, source, overrides, workdir)   # anyone on the Prefect server can edit these
    os.chdir(checked.workdir)
    client = tracking.configure()
    version = monitoring.version_of(client, model)
    if not version.name:
        raise ConfigError(f"{model}: a monitoring run watches a registered version (models:/NAME@ALIAS)")
    before = monitoring.last_check(client, version)
    episode = before.data.tags.get(EVENT_TAG) if before is not None and \
        before.data.tags.get("nerflow.drift") == "true" else None
    check = drift_check.run(model, source, overrides, finish_run=False)
    run_id = check.mlflow_run_id
    try:
        artifacts.publish_drift(version.name, check, browse_hint(run_id))
        if check.decision.drift and episode is None:
            episode = emit_drift_event(version, check)
            said = f"drift detected: event {EVENT} {episode} emitted for {resource_id(version.name)}"
        elif check.decision.drift:
            said = f"drift continues (its event {episode} was emitted by an earlier check; none now)"
        else:
            episode, said = None, "no drift"
        if episode:
            client.set_tag(run_id, EVENT_TAG, episode)
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    drifted = ", ".join(c.name for c in check.decision.checks if c.drift)
    return Completed(message=f"{said}: {version.name} version {version.version}, {check.record['texts']} texts"
                             f"{' (' + drifted + ')' if drifted else ''} (MLflow run {run_id})")


def emit_drift_event(version, check) -> str:
    """Send `nerflow.drift.detected` for the version's model with the evidence; the event's id. The retraining
    trigger reads only the event's name and resource: nothing in the payload reaches a run's parameters."""
    from prefect.events import emit_event

    from nerflow.config import ConfigError

    record = check.record
    payload = {"model_uri": record["model"], "version": version.version, "texts": record["texts"],
               "input": check.input_label[:500], "rule": record["rule"][:500],
               "mlflow_run_id": check.mlflow_run_id, "labelling_texts": len(check.labelling),
               "checks": [{k: c[k] for k in ("name", "statistic", "p_value", "alpha", "drift")}
                          for c in record["checks"]]}
    related = [{"prefect.resource.id": f"mlflow.run.{check.mlflow_run_id}", "prefect.resource.role": "drift-check"}]
    if version.run_id:
        related.append({"prefect.resource.id": f"mlflow.run.{version.run_id}", "prefect.resource.role": "model-run"})
    event = emit_event(EVENT, resource={"prefect.resource.id": resource_id(version.name),
                                        "prefect.resource.name": version.name,
                                        "nerflow.model.version": str(version.version)},
                       related=related, payload=payload)
    if event is None:   # events are off (no PREFECT_API_URL, or a client that does not send): the loop would break
        raise ConfigError(f"the event {EVENT} could not be sent: Prefect events are not enabled in this process "
                          "(a monitoring run needs a Prefect server: PREFECT_API_URL)")
    return str(event.id)
