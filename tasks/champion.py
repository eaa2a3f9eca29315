"""Moving `champion`: score versions, decide with the gate, record every move in the registry.

The decision is nerflow.promotion's (pure); the history's encoding and stack are nerflow.history's. This module is
the MLflow edge: it scores each version's verified model folder with nerflow's own code (tasks/served_model.py,
nerflow.scoring; never the version's pickled python model or bundled code), reads and writes
registry tags and aliases, and serialises every move of one alias with a lock that holds across processes
(tasks/promotion_lock.py). The gate scores before it takes the lock (a hung scoring holds no lock); under the lock
the alias is re-read, and if it moved since the gate scored against it (another move, the MLflow UI), the gate
scores again against the new champion before deciding.

Crash consistency (a kill at any point, an MLflow error between two writes): every move writes its history entry as
"intended" before it moves the alias, then the version tags, then marks the entry done (`_move`); every command that
touches the alias first settles what an interrupted one left (`settle_history`, under the lock). The rolled-back
marks on versions (`nerflow.rolled_back`) are kept in step with the history in the same pass, so the gate can read
either. Kill points (nerflow.faults) sit between the writes; tests/integration/test_crash_points.py uses them.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nerflow import faults, history, promotion, task_types
from nerflow.config import ConfigError
from nerflow.prefect_tasks import gate_scoring, mlflow_pages, model_page, served_model, tracking
from nerflow.prefect_tasks.promotion_lock import promotion_lock
from nerflow.promotion import Refused

log = logging.getLogger("nerflow.promote")
TASK_TAG, DECISION_TAG, REASON_TAG, ROLLED_BACK_TAG = "nerflow.task", "nerflow.promotion", "nerflow.reason", \
    "nerflow.rolled_back"
# in approval mode, the champion the gate compared the version with ("" for none): tasks/approval.py refuses to
# approve once the alias has moved, since the version was never compared with the new champion
AGAINST_TAG = "nerflow.gated_against"
# handed to the promote deployment: the evidence of the gate's decision, for the history entry the promoter writes
EVIDENCE_TAG = "nerflow.gate_evidence"
MAX_RESCORES = 3   # the alias moved under us this often in a row: give up rather than loop


def actor_name(explicit: str | None = None) -> str:
    """`--actor`, else the MLflow user name when the server has authentication, else the OS user."""
    return explicit or tracking.user_name()


def check_version(client: MlflowClient, name: str, version: str, task: str | None = None):
    """The version, or one clear error; with `task`, a version of another task type is refused (a version
    registered before task types has no tag and is NER)."""
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        known = model_exists(client, name)
        raise ConfigError(f"{name} version {version}: no such version" if known else
                          f"{name}: no registered model of that name (see `nerflow models`)") from None
    if task is not None and task_of(found) != task:
        raise ConfigError(f"{name} version {version} is a {found.tags[TASK_TAG]} model, not {task}")
    return found


def task_of(version) -> str:
    # a version registered before task types has no tag: the default task type made it
    return task_types.canonical(version.tags.get(TASK_TAG))


def check_alias_task(client: MlflowClient, name: str, alias: str, task: str) -> None:
    """An alias serves one task type: a version of another type may not take it from the one it holds."""
    held = alias_version(client, name, alias)
    held_task = None if held is None else task_of(client.get_model_version(name, held))
    if held_task not in (None, task):
        raise ConfigError(f"@{alias} of {name} holds a {held_task} model (version {held}); a {task} version cannot "
                          "replace it")


def model_exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    version = client.get_registered_model(name).aliases.get(alias)
    return None if version is None else str(version)


def read_history(client: MlflowClient, name: str, alias: str) -> list[history.Entry]:
    return history.decode_all(client.get_registered_model(name).tags, alias)


# ------------------------------------------------------------------------------------------------ moves
def _write(client: MlflowClient, name: str, alias: str, entry: history.Entry) -> None:
    client.set_registered_model_tag(name, history.entry_tag(alias, entry.seq), history.encode(entry))


def record(client: MlflowClient, name: str, alias: str, entries: list[history.Entry], **fields) -> history.Entry:
    """Append a done entry in one write: for a move that has already happened (an external one)."""
    entry = history.new_entry(entries, **fields)
    _write(client, name, alias, entry)
    entries.append(entry)
    return entry


def tag_decision(client: MlflowClient, name: str, version: str, verdict: str, reason: str) -> None:
    """The gate's (or a person's) verdict on the version. The reason goes first: a version with a verdict always
    has the reason for it (a kill between the two leaves a reason with the version's previous verdict)."""
    client.set_model_version_tag(name, version, REASON_TAG, reason[:4900])
    faults.point("version.reason-tagged")   # reason written, verdict not yet: the next gate or force rewrites both
    client.set_model_version_tag(name, version, DECISION_TAG, verdict)


def sync_rolled_back_marks(client: MlflowClient, name: str, entries: list[history.Entry]) -> None:
    """Make the versions' `nerflow.rolled_back` tags say what this alias's history says: marked when a rollback
    left the version and no one put it back since. Only versions this history rolled back are unmarked (another
    alias's rollback is that alias's business); a version deleted since is skipped."""
    want = history.rolled_back_versions(entries)
    ours = {e.from_version for e in entries if e.state == history.DONE and e.action == "rollback"}
    marked = {str(v.version) for v in mlflow_pages.model_versions(
        client, f"name = '{name}' and tag.`{ROLLED_BACK_TAG}` = 'true'")}
    for version in sorted(want - marked, key=int):
        try:
            client.set_model_version_tag(name, version, ROLLED_BACK_TAG, "true")
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        faults.point("version.rolled-back-marked")   # marks half-synced: the next settle finishes them
    for version in sorted((marked & ours) - want, key=int):
        client.delete_model_version_tag(name, version, ROLLED_BACK_TAG)
        faults.point("version.rolled-back-unmarked")   # as above


def _finish(client: MlflowClient, name: str, entries: list[history.Entry], entry: history.Entry) -> None:
    """What a move writes on versions once the alias has moved (idempotent: a settle after a kill repeats it)."""
    if entry.action == "force":
        tag_decision(client, name, entry.to_version, "forced", entry.reason)
    elif entry.action == "approve":
        tag_decision(client, name, entry.to_version, promotion.APPROVED, f"approved by {entry.actor}: {entry.reason}")
    elif entry.action == "promote" and client.get_model_version(
            name, entry.to_version).tags.get(DECISION_TAG) == promotion.HANDED_OVER:   # the promoter moved it
        tag_decision(client, name, entry.to_version, "accepted", f"moved by {entry.actor}: {entry.reason}")
    sync_rolled_back_marks(client, name, entries)


def _move(client: MlflowClient, name: str, alias: str, entries: list[history.Entry], **fields) -> history.Entry:
    """Move the alias crash-consistently: intended entry, alias, version tags, entry done (see the module doc)."""
    entry = history.new_entry(entries, **fields, state=history.INTENDED)
    _write(client, name, alias, entry)
    faults.point("promotion.intended")   # entry intended, alias not moved: the next settle marks it abandoned
    client.set_registered_model_alias(name, alias, entry.to_version)
    faults.point("promotion.alias-moved")   # alias moved, entry intended: the next settle completes the move
    done = replace(entry, state=history.DONE)
    entries.append(done)
    _finish(client, name, entries, done)
    faults.point("promotion.versions-tagged")   # all written but the entry's state: the next settle marks it done
    _write(client, name, alias, done)
    model_page.refresh(client, name, alias, entries)   # derived from the history: after the entry is done
    return done


def settle_history(client: MlflowClient, name: str, alias: str) -> tuple[list[history.Entry], str | None]:
    """(the alias's history, the version it points at), after repairing what an interrupted command left: each
    intended entry settled by where the alias is (a move that happened is finished: its version tags written, its
    entry done; one that did not is marked abandoned), a move made outside nerflow recorded, and the rolled-back
    marks in step with the history. Call it under `promotion_lock`."""
    entries = read_history(client, name, alias)
    current = alias_version(client, name, alias)
    settled = history.settle(entries, current)
    for before, after in zip(entries, settled, strict=True):
        if before.state == after.state:
            continue
        if after.state == history.DONE:
            log.warning("@%s of %s: completing an interrupted %s (%s -> %s, entry %d)", alias, name, after.action,
                        after.from_version, after.to_version, after.seq)
            _finish(client, name, settled, after)
        else:
            log.warning("@%s of %s: an interrupted %s (%s -> %s, entry %d) never moved the alias: marked abandoned",
                        alias, name, after.action, after.from_version, after.to_version, after.seq)
        _write(client, name, alias, after)
    entries[:] = settled
    current = note_external_move(client, name, alias, entries)
    sync_rolled_back_marks(client, name, entries)
    model_page.refresh(client, name, alias, entries)   # repairs a description a crash left stale
    return entries, current


def note_external_move(client: MlflowClient, name: str, alias: str, entries: list[history.Entry]) -> str | None:
    """The alias's version now; a move made outside nerflow (the MLflow UI) is recorded first, as such."""
    current = alias_version(client, name, alias)
    if history.external_move(entries, current):
        top = history.stack(entries)[-1] if history.stack(entries) else None
        log.warning("@%s of %s was moved outside nerflow (to %s): recorded as an external move", alias, name, current)
        record(client, name, alias, entries, action="external", actor="unknown (outside nerflow)", from_version=top,
               to_version=current, reason="the alias was moved outside nerflow")
    return current


def is_rolled_back(client: MlflowClient, name: str, version: str, entries: list[history.Entry]) -> bool:
    """Marked in the history or on the version (settle_history keeps the two in step; either is enough to refuse)."""
    if version in history.rolled_back_versions(entries):
        return True
    return client.get_model_version(name, version).tags.get(ROLLED_BACK_TAG) == "true"


def gate(client: MlflowClient, name: str, version: str, alias: str, rules: promotion.GateRules, split: Path,
         gold: list, data_passed: bool, auto: bool, actor: str, evidence: dict, task: str, trust: bool = False,
         trust_hint: str = served_model.TRUST_FLAG, approval: bool = False,
         handover: str | None = None, score_timeout_s: float = 0.0) -> promotion.Decision:
    """Score the challenger and the current champion (each checked against its stored hash, loaded with nerflow's
    code: score_versions), decide, and (when `auto` and accepted) move the alias and record the move. The decision
    goes on the version as tags whatever it is; with `approval` (and not `auto`) an accepted version not yet on the
    alias is tagged `awaiting approval` instead, its reason tag saying what to run (`nerflow approve`, see
    tasks/approval.py). With `handover` (a promote deployment's name) an accepted version is not moved here but
    tagged `accepted, handed to the promoter`, with the champion it was compared with and the evidence: the caller
    submits a run of that deployment, whose worker moves it with the promoter's credentials (tasks/approval.py
    `promote_handed_over`). Scoring longer than `score_timeout_s` (0: no limit) ends the gate with
    promotion.ScoringTimeout, nothing written. A version refused by its files (model_files.UnverifiedModel) ends the
    gate with that error: no decision is recorded."""
    version = str(version)
    check_version(client, name, version, task)
    check_alias_task(client, name, alias, task)
    for _ in range(MAX_RESCORES):
        # Scored before the lock is taken: a slow or hung scoring (a big model, a stuck download) holds no lock, so
        # the alias's other moves (force, rollback, another gate) go on. Under the lock the champion must still be
        # the one scored against; if it moved meanwhile, score again against the new one.
        champion = alias_version(client, name, alias)
        rolled_back = is_rolled_back(client, name, version, read_history(client, name, alias))
        decision = gate_scoring.decide(name, version, champion, rules, split, gold, data_passed, rolled_back, task,
                                       (trust, trust_hint), score_timeout_s)
        with promotion_lock(name, alias):
            entries, now = settle_history(client, name, alias)
            if now == champion and is_rolled_back(client, name, version, entries) == rolled_back:
                _apply(client, name, version, alias, decision, entries, champion, auto, approval, actor, evidence,
                       handover)
                return decision
        log.info("@%s moved from %s to %s while scoring: scoring against the new champion", alias, champion, now)
    raise RuntimeError(f"@{alias} of {name} kept moving while it was being scored; try again")


def _apply(client, name, version, alias, decision, entries, champion, auto, approval, actor, evidence,
           handover=None) -> None:
    """The gate's decision written (and, when `auto` and accepted, the alias moved, or handed over): under
    promotion_lock."""
    verdict = "accepted" if decision.accepted else "rejected"
    awaiting = approval and not auto and decision.accepted and champion != version
    handed = bool(handover) and auto and decision.accepted and champion != version
    if awaiting or handed:   # under the lock, in one pass: never an "accepted" that someone must not act on
        client.set_model_version_tag(name, version, AGAINST_TAG, champion or "")
        if handed:
            client.set_model_version_tag(name, version, EVIDENCE_TAG, json.dumps(
                {"challenger_f1": decision.challenger_f1, "champion_f1": decision.champion_f1, **evidence}))
        tag_decision(client, name, version, promotion.HANDED_OVER if handed else promotion.AWAITING,
                     (f"{handover} moves it with the promoter's credentials" if handed else
                      promotion.approval_hint(name, version)) + f"; the gate accepted it: {decision.reason}")
    else:
        tag_decision(client, name, version, verdict, decision.reason)
    faults.point("gate.decided")   # verdict on the version, alias not moved, no entry: the gate is rerun as is
    if decision.accepted and auto and not handed and champion != version:
        _move(client, name, alias, entries, action="promote", actor=actor, from_version=champion,
              to_version=version, reason=decision.reason, evidence=history.Evidence(
                  challenger_f1=decision.challenger_f1, champion_f1=decision.champion_f1, **evidence))
    held = f" (awaiting approval: {promotion.approval_hint(name, version)})" if awaiting else \
        f" (handed to {handover}: the promoter moves it)" if handed else " (promote.auto is false: nothing moved)"
    log.info("%s version %s: %s for @%s: %s%s", name, version, verdict, alias, decision.reason,
             "" if (auto and not handed) or not decision.accepted else held)


def force(client: MlflowClient, name: str, version: str, alias: str, actor: str, reason: str) -> history.Entry:
    version = str(version)
    check_alias_task(client, name, alias, task_of(check_version(client, name, version)))
    with promotion_lock(name, alias):
        entries, champion = settle_history(client, name, alias)
        if champion == version:
            raise Refused(f"{name} version {version} is @{alias} already")
        return _move(client, name, alias, entries, action="force", actor=actor, from_version=champion,
                     to_version=version, reason=reason)


def rollback(client: MlflowClient, name: str, alias: str, actor: str, reason: str | None = None) -> history.Entry:
    if not model_exists(client, name):
        raise ConfigError(f"{name}: no registered model of that name (see `nerflow models`)")
    with promotion_lock(name, alias):
        entries, _ = settle_history(client, name, alias)
        target = history.rollback_target(entries)
        if target is None:
            raise Refused(f"{name} @{alias}: nothing to roll back to (no earlier champion in its history)")
        current, previous = target
        return _move(client, name, alias, entries, action="rollback", actor=actor, from_version=current,
                     to_version=previous, reason=reason or f"rolled back from version {current}")
