"""The entry flow of every schedule (`nerflow-scheduled`): decide cheaply whether anything changed, then run the
pipeline as a child flow run only if something did.

Deployments point here, not at the pipeline, so that a run whose plan matches a logical run already registered
ends in seconds: this module imports Prefect and the planning code only (no torch, no transformers), hashes the
configured data files, model files and code, and asks the registry (tasks/registered.py). The pipeline, and with it
torch, is imported only when there is work to do. What counts as a change: the content of the configured data
files (`data.dir` + train/validation/test names), the base model's files, the config and nerflow's code. A new
file beside the configured ones is not read, so it changes nothing. A file whose inode, size, mtime and ctime are
those recorded when it was last hashed is not read again (nerflow.stat_cache); the pipeline, when it runs, plans
again from content alone.
"""
from __future__ import annotations

import contextlib
import os
import sys

from prefect import flow
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled, Completed

from nerflow import faults, redact
from nerflow.flows import errors, interrupts
from nerflow.flows.errors import MLFLOW_HTTP_BOUNDS

ERROR_LABEL = "nerflow.error"   # a failed run's one error line, for `nerflow schedule ls`


@flow(name="nerflow-scheduled", log_prints=False)
def scheduled_pipeline(config: str, overrides: list[str] | None = None, workdir: str | None = None):
    """Retrain `config` (with `overrides`, key=value) when its data, settings or code changed since the version
    registered for them; `workdir`: the project checkout relative paths are read from (default: where the worker
    or `nerflow serve` runs)."""
    with interrupts.ignored_after_the_body():   # serve's Ctrl-C after the run ended: no traceback
        from nerflow.flows.console import quiet_libraries, quiet_prefect_failures

        quiet_libraries()
        quiet_prefect_failures()   # one line per failed run on the terminal (report_failure), no tracebacks
        for key, value in MLFLOW_HTTP_BOUNDS.items():   # an unreachable MLflow server fails the run in seconds
            os.environ.setdefault(key, value)
        try:
            return _retrain_if_changed(config, overrides, workdir)
        except Exception as e:
            report_failure(e)
            raise   # the flow run fails with it: Prefect's state message and the UI's logs keep the exception


def _retrain_if_changed(config: str, overrides: list[str] | None, workdir: str | None):
    from nerflow import stat_cache
    from nerflow.config import load_config
    from nerflow.flows.deploy_checks import check_flow_run
    from nerflow.plan import make_plan
    from nerflow.prefect_tasks import registered, tracking

    checked = check_flow_run(config, overrides, workdir)   # anyone on the Prefect server can edit these: first
    os.chdir(checked.workdir)
    cfg = load_config(config, list(overrides or []))   # the path as given: the errors name it so
    with stat_cache.trusting_unchanged(cfg.cache_dir):   # unchanged files keep their hash; the pipeline rehashes
        plan = make_plan(cfg)
    # planned, nothing written: a kill here crashes this flow run and the next one plans again (also where a test
    # holds a running retraining while a second drift event queues another behind it)
    faults.point("scheduled.planned")
    client = tracking.configure()
    done = registered.find_registered(client, cfg, plan)
    if done is not None:
        who = f"Prefect flow run {flow_run.get_id()} of deployment {deployment.get_name() or '-'}"
        registered.note_unchanged(client, done.run_id, who)
        return Completed(message=drift_without_new_labels(client, done, who) or nothing_to_do(done))
    from nerflow.flows.pipeline import pipeline  # torch from here on

    state = pipeline(cfg, return_state=True)
    if state.is_cancelled():
        return Cancelled(message=state.message)
    result = state.result()   # raises what the pipeline raised: this flow run fails with it
    if result.already_done:   # another worker registered it while this one waited for the run lock
        return Completed(message=nothing_to_do(result))
    return Completed(message=finished(result))


def report_failure(exc: BaseException) -> None:
    """What `nerflow run` would print for this error, printed once on the terminal of `nerflow serve` (or the
    worker), and kept as the flow run's label `nerflow.error` for `nerflow schedule ls`. A bug prints its
    traceback; an interruption (a cancel) is no error."""
    code = errors.classify(exc)
    if code == errors.EXIT_INTERRUPTED:
        return
    if code == errors.EXIT_BUG:
        print(errors.format_bug(exc), file=sys.stderr, flush=True)
        first = (str(exc).strip().splitlines() or [""])[0]
        line = f"error: a bug in nerflow: {type(exc).__name__}: {first} (the traceback is in the flow run's logs)"
    else:
        text = errors.message(exc, code)
        print(text, file=sys.stderr, flush=True)
        line = text.splitlines()[0]
    from prefect.client.orchestration import get_client

    with contextlib.suppress(Exception), get_client(sync_client=True) as client:   # best effort: the state stays
        client.update_flow_run_labels(flow_run.get_id(), {ERROR_LABEL: redact.text(line)})


def drift_without_new_labels(client, done, who: str) -> str | None:
    """When the model's latest drift check since this version was registered found drift (flows/monitor_flow.py,
    whose event started this run), retraining on the same labelled data would rebuild the same model: say so, and
    name the texts that check chose to label first (`labelling/texts-to-label.jsonl` on its MLflow run), so that
    new labels close the loop. None when no such check."""
    from nerflow.prefect_tasks import artifacts, monitoring

    version = _registered(done)
    since = client.get_model_version(version.model_name, version.version).creation_timestamp
    check = monitoring.open_drift(client, version.model_name, since)
    if check is None:
        return None
    run_id = check.info.run_id
    texts = int(check.data.metrics.get("drift/labelling_texts", 0))
    batch = f"runs:/{run_id}/{monitoring.LABELLING_BATCH}"
    said = (f"drift detected, no new labelled data: {version.model_name} version {version.version} was registered "
            "from this data, config and code; " +
            (f"{texts} texts to label first: {batch} (chosen by the drift check, MLflow run {run_id}); with their "
             "labels in the training data the next run retrains" if texts else
             f"the drift check (MLflow run {run_id}) found no text in the drifted region to label"))
    client.set_tag(run_id, "nerflow.drift.retraining", f"{who}: no new labelled data")
    artifacts.publish_labelling(version.model_name, said, batch if texts else None)
    return said


def nothing_to_do(done) -> str:
    registered = _registered(done)
    return (f"nothing to do: {registered.model_name} version {registered.version} was registered from this data, "
            f"config and code (MLflow run {done.run_id})")


def finished(result) -> str:
    registered, promoted = _registered(result), _promoted(result)
    verdict = f"; promotion: {promoted['decision']} ({promoted.get('reason', '')})" if promoted else ""
    made = "already registered:" if registered.reused else \
        "registered" if registered.new_version else "weights identical to"
    metrics = next((o.metrics for o in result.outputs.values() if hasattr(o, "metrics")), {})
    return (f"{made} {registered.model_name} version {registered.version}, test F1 {metrics.get('test/f1', 0):.4f}"
            f"{verdict} (MLflow run {result.run_id})")


def _registered(result):
    from nerflow.outputs import Registered

    return next(o for o in result.outputs.values() if isinstance(o, Registered))


def _promoted(result) -> dict:
    from nerflow.outputs import Promoted

    return next((o.decision for o in result.outputs.values() if isinstance(o, Promoted)), {})
