"""The reference stage's text-classification side (nerflow.drift_profile): the validation split's texts, each its own
document, and the served predictor that answers them."""
from __future__ import annotations

from pathlib import Path

from nerflow.textcat.data import Document, read_split
from nerflow.textcat.predict import load_predictor  # noqa: F401 - this entry's predictor (the stage profiles it)


def texts_of(docs: list[Document]) -> list[tuple[str, str]]:
    """(text, its document: the text's own source)."""
    return [(d.text, d.source) for d in docs]


def split_texts(validated: Path, split: str) -> list[tuple[str, str]]:
    """The validate stage's canonical `split` (validation: the reference and hold-out; train: the descriptors'
    calibration pool), as `texts_of`; empty when the split has no file."""
    path = Path(validated) / f"{split}.jsonl"
    return texts_of(read_split(path)) if path.is_file() else []
