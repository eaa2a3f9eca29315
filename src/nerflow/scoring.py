"""The served-scorer protocol: how the promotion gate (and `nerflow compare`) scores a registered version's weights
on the same inputs the evaluate stage scores.

A model that speaks the protocol (`Scorer`) takes the examples *as the task reads them*: the dicts of a canonical
split's JSON lines (NER `{"tokens", "tags", "doc", "source"}`, text classification `{"text", "labels", "source"}`),
and answers in the task's label space: one IOB2 tag per token (NER), the list of predicted labels per text (text
classification); NER reads consecutive examples with the same `doc` as one document when the model was trained
with document context (`tokenize.context: document`). It also names its label set and whether one example may
carry several labels. The in-process predictors of both task types implement it (their `promote` entry's
`load_scorer(folder)` builds one from a verified model folder); nothing here knows which task it scores.

Every version is scored by nerflow's installed code, in this process: a version's own pickled python model and
bundled code are never loaded (docs/promotion.md, "Loading a version"), so there is no process to start per
version, and an older version is scored with today's windows and decoding.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Scorer(Protocol):
    """What a model answers the gate: predictions for examples as the task reads them, in its label space."""

    labels: list[str]       # the label set it predicts from (NER: IOB2 tags; texts: class names)
    multi_label: bool       # several labels per example may be predicted (NER: False, one tag per token)

    def predict_examples(self, examples: list[dict]) -> list:
        """One prediction per example: a list of IOB2 tags, one per token (NER); a list of labels (texts)."""


def score(scorers: dict[str, Scorer], examples: list[dict]) -> dict[str, dict[str, Any]]:
    """{key: {"labels", "multi_label", "pred"}}: each scorer's predictions for the examples, in the task's label
    space (what the task's `gate_tables` and `hits` read)."""
    results = {}
    for key, scorer in scorers.items():
        pred = scorer.predict_examples(examples) if examples else []
        if len(pred) != len(examples):
            raise RuntimeError(f"model {key} answered {len(pred)} predictions for {len(examples)} examples")
        results[key] = {"labels": list(scorer.labels), "multi_label": bool(scorer.multi_label), "pred": list(pred)}
    return results
