"""The reference stage's NER side (nerflow.drift_profile): the validation split's sentences as the texts a served
model is given, each with its document, and the served predictor that answers them."""
from __future__ import annotations

from pathlib import Path

from nerflow.ner.data import Sentence, read_split
from nerflow.ner.predict import load_predictor  # noqa: F401 - this entry's predictor (the stage profiles its answers)


def texts_of(sentences: list[Sentence]) -> list[tuple[str, str]]:
    """(the sentence's words joined by spaces, its document: the file and its -DOCSTART- block)."""
    return [(" ".join(s.tokens), f"{s.source.rpartition(':')[0]}#{s.doc}") for s in sentences]


def split_texts(validated: Path, split: str) -> list[tuple[str, str]]:
    """The validate stage's canonical `split` (validation: the reference and hold-out; train: the descriptors'
    calibration pool), as `texts_of`; empty when the split has no file."""
    path = Path(validated) / f"{split}.jsonl"
    return texts_of(read_split(path)) if path.is_file() else []
