"""The gate's scoring: each version's verified model folder loaded with nerflow's own code and scored on the split,
then the decision (nerflow.promotion, pure). No lock is held here (tasks/champion.py `gate` scores before it takes
the promotion lock), and nothing is written to the registry. `promote.score_timeout_s` bounds it: the scoring runs in
a daemon thread that the gate stops waiting for (a thread cannot be killed; it ends with the command's or the flow
run's process, which is where a gate runs)."""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from nerflow import faults, promotion, scoring, task_types
from nerflow.prefect_tasks import served_model, tracking


def score_versions(name: str, versions: list[str], split: Path, task: str, trust: bool = False,
                   trust_hint: str = served_model.TRUST_FLAG) -> dict[str, dict]:
    """{version: {"labels", "multi_label", "pred"}}: each version's served folder downloaded and checked against the
    hash stored on it (tasks/served_model.py; `trust`: let a version without one, or with pickled weights, through),
    then loaded with nerflow's installed code and asked for the split's examples through the served-scorer protocol
    (nerflow.scoring). Every version is checked before any is loaded: a refusal costs no model load."""
    client, scorer = tracking.configure(), task_types.entry(task, "promote")
    with tempfile.TemporaryDirectory(prefix="nerflow-score-") as tmp:
        folders = {v: served_model.fetch(served_model.version_source(client, name, v), Path(tmp) / f"v{v}", trust,
                                         trust_hint) for v in dict.fromkeys(versions)}
        with served_model.quiet_loading():
            loaded = {v: scorer.load_scorer(folder) for v, folder in folders.items()}   # all in memory: tmp may go
    return scoring.score(loaded, scorer.examples(Path(split)))


def decide(name, version, champion, rules, split, gold, data_passed, rolled_back, task, trusted,
           timeout_s: float = 0.0) -> promotion.Decision:
    """The gate's decision for `version` against `champion` (None: no champion yet); `trusted`: (trust, hint).
    Longer than `timeout_s` (0: no limit): promotion.ScoringTimeout."""
    return within(timeout_s, f"the gate's scoring of {name} version {version}"
                  f"{f' against version {champion}' if champion and champion != version else ''}",
                  lambda: _decide(name, version, champion, rules, split, gold, data_passed, rolled_back, task,
                                  trusted))


def within(timeout_s: float, what: str, work):
    """`work()`, or ScoringTimeout after `timeout_s` seconds (0: wait as long as it takes)."""
    if not timeout_s:
        return work()
    said: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            said["value"] = work()
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread as it is
            said["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name="nerflow-gate-scoring", daemon=True).start()
    if not done.wait(timeout_s):
        raise promotion.ScoringTimeout(f"{what} took longer than promote.score_timeout_s ({timeout_s:g} s): the gate "
                                       "stopped without deciding; nothing was written and no lock is held (raise "
                                       "the limit, or 0 for none, and run it again)")
    if "error" in said:
        raise said["error"]
    return said["value"]


def _decide(name, version, champion, rules, split, gold, data_passed, rolled_back, task, trusted
            ) -> promotion.Decision:
    faults.point("gate.scoring")   # nothing written yet, no lock held: a hang here blocks no other move
    if champion == version:
        return promotion.Decision(True, f"version {version} is already @champion", 0.0, None, None, ())
    if rolled_back:   # refused whatever the scores: do not compute them
        return promotion.decide({"f1": 0.0, "per_type": {}}, None, rules, data_passed, challenger_rolled_back=True)
    scored = score_versions(name, [v for v in (version, champion) if v], split, task, *trusted)
    challenger_table, champion_table, restricted = task_types.entry(task, "promote").gate_tables(
        gold, scored, (version, champion))
    return promotion.decide(challenger_table, champion_table, rules, data_passed, challenger_rolled_back=False,
                            restricted=restricted)
