"""Approval mode's second half: a person approves (moves the alias) or rejects a version the gate accepted.

The promote stage in approval mode (promote.mode: approval) ends its run with the version tagged `awaiting
approval` and the champion it was compared with recorded on it (champion.AGAINST_TAG); nothing waits and no lock is held
meanwhile. `approve` moves the alias through the same crash-safe path as a forced move (tasks/champion.py `_move`:
intended history entry, alias, version tags, entry done), under the promotion lock, as the MLflow-authenticated user:
on a team server only a promoter account may write the history or the alias (infra/mlflow-roles), and the intended
entry is the first write, so a refused approval leaves nothing half-written. `reject` only tags the version: the alias
does not move, so the alias's history (a record of moves) gets no entry.
"""
from __future__ import annotations

from mlflow import MlflowClient

from nerflow import history, promotion
from nerflow.prefect_tasks import champion
from nerflow.prefect_tasks.promotion_lock import promotion_lock
from nerflow.promotion import Refused


def _awaiting(client: MlflowClient, name: str, version: str, alias: str):
    """The version, when it is awaiting approval; else Refused naming what it is."""
    found = champion.check_version(client, name, version)
    verdict = found.tags.get(champion.DECISION_TAG)
    if verdict != promotion.AWAITING:
        said = f"its promotion tag is {verdict!r}" if verdict else "the gate never decided on it"
        raise Refused(f"{name} version {version} is not awaiting approval for @{alias} ({said}); only a version the "
                      "gate accepted in a promote.mode: approval run can be approved or rejected")
    return found


def approve(client: MlflowClient, name: str, version: str, alias: str, actor: str, reason: str) -> history.Entry:
    version = str(version)
    found = _awaiting(client, name, version, alias)
    champion.check_alias_task(client, name, alias, champion.task_of(found))
    with promotion_lock(name, alias):
        entries, current = champion.settle_history(client, name, alias)
        found = _awaiting(client, name, version, alias)   # re-read under the lock: another approve or reject won
        if current == version:
            raise Refused(f"{name} version {version} is @{alias} already")
        against = found.tags.get(champion.AGAINST_TAG)
        if against is not None and (against or None) != current:
            raise Refused(f"{name} version {version}: @{alias} moved since the gate compared it with "
                          f"{'version ' + against if against else 'no champion'} (now {current or 'unset'}); run "
                          f"`nerflow promote {name} {version}` to gate it again")
        return champion._move(client, name, alias, entries, action="approve", actor=actor, from_version=current,
                              to_version=version, reason=reason,
                              evidence=history.Evidence(mlflow_run_id=found.run_id or None))


def reject(client: MlflowClient, name: str, version: str, alias: str, actor: str, reason: str) -> None:
    version = str(version)
    _awaiting(client, name, version, alias)
    with promotion_lock(name, alias):   # not while an approve of the same version is moving the alias
        _awaiting(client, name, version, alias)
        champion.tag_decision(client, name, version, promotion.REJECTED, f"rejected by {actor}: {reason}")
