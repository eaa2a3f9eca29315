"""A study's storage and its repair (flows/tune_flow.py): Optuna's relational storage with the trial heartbeat, and
what an earlier attempt left unfinished made runnable again: a trial whose process died (kill -9) or was interrupted
(Ctrl-C) is failed and enqueued again with the same values, never left RUNNING."""
from __future__ import annotations

import logging
import socket
import time

log = logging.getLogger("nerflow.tune")

HEARTBEAT_S, GRACE_S = 60, 300   # Optuna's trial heartbeat; a trial silent for GRACE_S is failed (and retried)
MAX_RETRIES = 2                  # a trial whose process died is retried at most this many times


def finished_states():
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def finished(study) -> int:
    return len(study.get_trials(deepcopy=False, states=finished_states()))


def make_storage(url: str):
    """The study's storage, with Optuna's trial heartbeat: a trial whose process stops beating for GRACE_S is
    failed by the next trial any process starts, and retried (RetryHeartbeatStaleTrialCallback) at most MAX_RETRIES
    times, its epochs' scores kept."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRIES, inherit_intermediate_values=True),
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)
        except sqlalchemy.exc.IntegrityError:
            # two processes opening a new storage at once both create its schema; the loser finds it made
            if attempt == 2:
                raise
            time.sleep(1.0)


def repair(study) -> None:
    """Trials an earlier attempt left unfinished: those this host ran in a process that is gone (kill -9: Optuna's
    heartbeat would wait GRACE_S) are failed, and they and the interrupted ones (Ctrl-C) are enqueued again with
    the same values, once each: the retried trial trains with the same keys, so it continues from the checkpoints
    its predecessor left."""
    import optuna

    from nerflow.prefect_tasks import liveness

    here = liveness.namespace()
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        process = trial.user_attrs.get("process") or {}
        if process.get(liveness.HOST_TAG) == socket.gethostname() and \
                liveness.dead_because(process, here, 0.0, float("inf")) is not None:
            try:   # marked first: a finished trial's attributes can no longer change
                study._storage.set_trial_user_attr(trial._trial_id, "died", True)
                study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue   # another process got there first
            log.warning("trial %d was left RUNNING by process %s, which is gone: failed, and enqueued again",
                        trial.number, process.get(liveness.PID_TAG))
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for trial in trials:
        again = trial.user_attrs.get("interrupted") or trial.user_attrs.get("died")
        if trial.state == optuna.trial.TrialState.FAIL and again and trial.number not in retried:
            if len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRIES and trial.user_attrs.get("died"):
                continue
            retry(study, trial)
