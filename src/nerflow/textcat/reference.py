"""The reference stage's text-classification side (nerflow.drift_profile): the validation split's texts, each its own
document, and the served predictor that answers them."""
from __future__ import annotations

from pathlib import Path

from nerflow.textcat.data import Document, read_split
from nerflow.textcat.predict import load_predictor  # noqa: F401 - this entry's predictor (the stage profiles it)


def texts_of(docs: list[Document]) -> list[tuple[str, str]]:
    """(text, its document: the text's own source)."""
    return [(d.text, d.source) for d in docs]


def validation_texts(validated: Path) -> list[tuple[str, str]]:
    """The validate stage's canonical validation split, as `texts_of`."""
    return texts_of(read_split(Path(validated) / "validation.jsonl"))
