"""The gate's scoring: each version's verified model folder loaded with nerflow's own code and scored on the split,
then the decision (nerflow.promotion, pure). No lock is held here (tasks/champion.py `gate` scores before it takes
the promotion lock), and nothing is written to the registry."""
from __future__ import annotations

import tempfile
from pathlib import Path

from nerflow import promotion, scoring, task_types
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


def decide(name, version, champion, rules, split, gold, data_passed, rolled_back, task, trusted
           ) -> promotion.Decision:
    """The gate's decision for `version` against `champion` (None: no champion yet); `trusted`: (trust, hint)."""
    if champion == version:
        return promotion.Decision(True, f"version {version} is already @champion", 0.0, None, None, ())
    if rolled_back:   # refused whatever the scores: do not compute them
        return promotion.decide({"f1": 0.0, "per_type": {}}, None, rules, data_passed, challenger_rolled_back=True)
    scored = score_versions(name, [v for v in (version, champion) if v], split, task, *trusted)
    challenger_table, champion_table, restricted = task_types.entry(task, "promote").gate_tables(
        gold, scored, (version, champion))
    return promotion.decide(challenger_table, champion_table, rules, data_passed, challenger_rolled_back=False,
                            restricted=restricted)
