"""NER's side of the served-scorer protocol (nerflow.scoring), the `promote` entry of the task type: the examples of
a canonical split, their gold tags, the scorer built from a verified model folder (`load_scorer`), and what the
gate and `nerflow compare` count (`gate_tables`, `hits`, `gold_count`)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from nerflow.ner.data import read_split
from nerflow.ner.evaluate import gate_tables  # noqa: F401 - the gate's score tables: this entry's, with the rest
from nerflow.ner.schemes import entity_spans


def examples(split: Path) -> list[dict]:
    """The canonical split's sentences as dicts (`tokens`, `tags`, `source`, `doc`), as the protocol takes them."""
    return [asdict(s) for s in read_split(split)]


def gold(examples: list[dict]) -> list[list[str]]:
    return [list(e["tags"]) for e in examples]


def load_scorer(folder: Path):
    """The windowed predictor of a model folder nerflow trained (nerflow.ner.predict): it speaks the protocol."""
    from nerflow.ner.predict import Predictor

    return Predictor.load(folder)


def hits(gold_tags: list[list[str]], served: dict) -> set:
    """The gold entities a version's served predictions got right (`nerflow compare`)."""
    predicted = {(i, *e) for i, seq in enumerate(served["pred"]) for e in entity_spans(seq)}
    return predicted & {(i, *e) for i, seq in enumerate(gold_tags) for e in entity_spans(seq)}


def gold_count(gold_tags: list[list[str]]) -> int:
    return sum(len(entity_spans(seq)) for seq in gold_tags)
