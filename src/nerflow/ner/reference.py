"""The reference stage's NER side (nerflow.drift_profile): the validation split's sentences as the texts a served
model is given, each with its document, and the served predictor that answers them."""
from __future__ import annotations

from pathlib import Path

from nerflow.ner.data import Sentence, read_split
from nerflow.ner.predict import load_predictor  # noqa: F401 - this entry's predictor (the stage profiles its answers)


def texts_of(sentences: list[Sentence]) -> list[tuple[str, str]]:
    """(the sentence's words joined by spaces, its document: the file and its -DOCSTART- block)."""
    return [(" ".join(s.tokens), f"{s.source.rpartition(':')[0]}#{s.doc}") for s in sentences]


def validation_texts(validated: Path) -> list[tuple[str, str]]:
    """The validate stage's canonical validation split, as `texts_of`."""
    return texts_of(read_split(Path(validated) / "validation.jsonl"))
