"""Texts for the drift tests (tests/integration/test_drift.py, tests/team/test_drift_loop.py): sentences in the tiny
corpus's words, drawn from one distribution, and the shift every drifted batch applies (characters replaced, as OCR or a
broken feed does to news)."""
from __future__ import annotations

import json
import random
from pathlib import Path

PEOPLE = [["Maria", "Lopez"], ["John", "Smith"], ["Anna", "Schmidt"], ["Pedro", "Alvarez"]]
ORGS = [["Acme", "Corp"], ["Globex"], ["Initech"], ["Northwind", "Trading"]]
PLACES = [["Berlin"], ["Paris"], ["Springfield"], ["New", "Salem"], ["Madrid"]]
TEMPLATES = [["PER", "visited", "LOC", "."], ["ORG", "hired", "PER", "."], ["PER", "works", "for", "ORG", "in", "LOC",
             "."], ["Nobody", "said", "anything", "."], ["The", "Vortex", "3000", "was", "launched", "by", "ORG", "in",
                                                         "LOC", "."]]


def sentence(rng: random.Random) -> list[tuple[str, str]]:
    """One sentence in the tiny corpus's words, tagged: the distribution every batch below draws from."""
    out = []
    for slot in rng.choice(TEMPLATES):
        pool = {"PER": PEOPLE, "ORG": ORGS, "LOC": PLACES}.get(slot)
        if pool is None:
            out.append((slot, "O"))
            continue
        words = rng.choice(pool)
        out += [(w, ("B-" if i == 0 else "I-") + slot) for i, w in enumerate(words)]
    return out


def noisy(text: str, rng: random.Random, share: float = 0.3) -> str:
    """Characters replaced by digits and symbols: the shifted batch (what OCR or a broken feed does to news)."""
    return "".join(rng.choice("0123456789#@%&") if c.isalpha() and rng.random() < share else c for c in text)


def write_ner_documents(path: Path, docs: list[list[list[tuple[str, str]]]]) -> Path:
    """CoNLL with a -DOCSTART- line before each document: the reference is drawn by document."""
    path.write_text("".join("-DOCSTART- O\n\n" + "".join(
        "".join(f"{w} {t}\n" for w, t in s) + "\n" for s in doc) for doc in docs))
    return path


def write_texts(path: Path, texts: list[str]) -> Path:
    """JSON lines with `text` (and an id), as `nerflow predict` and `nerflow drift` read them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t, "id": k}) + "\n" for k, t in enumerate(texts)))
    return path
