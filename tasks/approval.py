"""The second half of a gate that does not move the alias itself: a person approves (moves the alias) or rejects a
version the gate accepted in approval mode, or the promote deployment's worker moves one the gate handed over.

The promote stage in approval mode (promote.mode: approval) ends its run with the version tagged `awaiting
approval` and the champion it was compared with recorded on it (champion.AGAINST_TAG); nothing waits and no lock is held
meanwhile. In auto mode with a promote deployment (NERFLOW_PROMOTE_DEPLOYMENT, flows/promote_flow.py) the gate tags it
`accepted, handed to the promoter` instead, with its evidence, and submits a run of that deployment.

`approve` and `promote_handed_over` move the alias through the same crash-safe path as a forced move
(tasks/champion.py `_move`: intended history entry, alias, version tags, entry done), under the promotion lock, as the
MLflow-authenticated user: on a team server only a promoter account may write the history or the alias
(infra/mlflow-roles), and the intended entry is the first write, so a refused move leaves nothing half-written. Both
refuse once the alias has moved since the gate compared (the version was never compared with the new champion).
`reject` only tags the version: the alias does not move, so the alias's history (a record of moves) gets no entry.
"""
from __future__ import annotations

import json

from mlflow import MlflowClient

from nerflow import history, promotion
from nerflow.prefect_tasks import champion
from nerflow.prefect_tasks.promotion_lock import promotion_lock
from nerflow.promotion import Refused

_HELD = {promotion.AWAITING: "awaiting approval", promotion.HANDED_OVER: "handed to the promoter"}
_WHICH = {promotion.AWAITING: "a promote.mode: approval run",
          promotion.HANDED_OVER: "a promote.mode: auto run with a promote deployment"}


def _held(client: MlflowClient, name: str, version: str, alias: str, verdict: str = promotion.AWAITING):
    """The version, when the gate left it `verdict` (awaiting approval, handed to the promoter); else Refused."""
    found = champion.check_version(client, name, version)
    said = found.tags.get(champion.DECISION_TAG)
    if said != verdict:
        what = f"its promotion tag is {said!r}" if said else "the gate never decided on it"
        then = "moved so" if verdict == promotion.HANDED_OVER else "approved or rejected"
        raise Refused(f"{name} version {version} is not {_HELD[verdict]} for @{alias} ({what}); only a version the "
                      f"gate accepted in {_WHICH[verdict]} can be {then}")
    return found


def _move_held(client: MlflowClient, name: str, version: str, alias: str, verdict: str, actor: str, **fields
               ) -> history.Entry:
    version = str(version)
    found = _held(client, name, version, alias, verdict)
    champion.check_alias_task(client, name, alias, champion.task_of(found))
    with promotion_lock(name, alias):
        entries, current = champion.settle_history(client, name, alias)
        found = _held(client, name, version, alias, verdict)   # re-read under the lock: another move or reject won
        if current == version:
            raise Refused(f"{name} version {version} is @{alias} already")
        against = found.tags.get(champion.AGAINST_TAG)
        if against is not None and (against or None) != current:
            raise Refused(f"{name} version {version}: @{alias} moved since the gate compared it with "
                          f"{'version ' + against if against else 'no champion'} (now {current or 'unset'}); run "
                          f"`nerflow promote {name} {version}` to gate it again")
        return champion._move(client, name, alias, entries, actor=actor, from_version=current, to_version=version,
                              **fields)


def approve(client: MlflowClient, name: str, version: str, alias: str, actor: str, reason: str) -> history.Entry:
    found = _held(client, name, str(version), alias)
    return _move_held(client, name, version, alias, promotion.AWAITING, actor, action="approve", reason=reason,
                      evidence=history.Evidence(mlflow_run_id=found.run_id or None))


def promote_handed_over(client: MlflowClient, name: str, version: str, alias: str, actor: str) -> history.Entry:
    """The promote deployment's move: the gate's decision, by the promoter's account; its evidence from the
    version's tags (the run account wrote them, as it writes every gate decision)."""
    found = _held(client, name, str(version), alias, promotion.HANDED_OVER)
    try:
        said = json.loads(found.tags.get(champion.EVIDENCE_TAG) or "{}")
    except ValueError:
        said = {}
    known = {k: _field(said.get(k), float if k.endswith("_f1") else str) for k in history.Evidence.__dataclass_fields__}
    reason = found.tags.get(champion.REASON_TAG, "").split("; the gate accepted it: ", 1)[-1]
    return _move_held(client, name, version, alias, promotion.HANDED_OVER, actor, action="promote",
                      reason=reason or "the gate accepted it", evidence=history.Evidence(**known))


def _field(value, kind):
    """A tag anyone with EDIT could have written: what does not read as `kind` is left out, never an error."""
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        return None


def reject(client: MlflowClient, name: str, version: str, alias: str, actor: str, reason: str) -> None:
    version = str(version)
    _held(client, name, version, alias)
    with promotion_lock(name, alias):   # not while an approve of the same version is moving the alias
        _held(client, name, version, alias)
        champion.tag_decision(client, name, version, promotion.REJECTED, f"rejected by {actor}: {reason}")
