"""Keep held-out text out of pretraining: texts that are exact or near duplicates of a validation or test text are
removed, and how many is returned (so it can be logged).

Exact: the same text after NFKC, lower-casing and whitespace collapse. Near: word 5-gram Jaccard similarity >= 0.8
with one held-out text (texts of fewer than 5 words have no 5-gram and can only be exact duplicates).

Fast on millions of words: an inverted index from 5-gram to the held-out texts that contain it, and a prefix
filter. Jaccard >= t needs |A n B| >= t * |A|, so any |A| - ceil(t * |A|) + 1 of A's 5-grams include a shared one:
only the held-out texts listed under A's rarest grams of that count are candidates, each then checked exactly.
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NGRAM = 5
NEAR_JACCARD = 0.8


def normalize(text: str) -> str:
    """NFKC, lower case, runs of whitespace as one space, no leading or trailing space."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def shingles(normalized: str, n: int = NGRAM) -> set[int]:
    """The text's word n-grams, hashed (a hash collision can only make two texts look more alike: safe side)."""
    words = normalized.split(" ")
    return {hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class Decontaminated:
    texts: list[str]        # the texts kept, in their order
    exact: int              # removed: the same normalized text as a held-out one
    near: int               # removed: 5-gram Jaccard >= the threshold with a held-out one (and not exact)

    @property
    def removed(self) -> int:
        return self.exact + self.near


class HeldOutIndex:
    """The held-out texts, ready to ask whether a text is an exact or near duplicate of one of them."""

    def __init__(self, held_out: Iterable[str], threshold: float = NEAR_JACCARD):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.exact: set[str] = set()
        self.grams: list[set[int]] = []
        self.postings: dict[int, list[int]] = {}
        for text in held_out:
            normalized = normalize(text)
            self.exact.add(normalized)
            grams = shingles(normalized)
            if not grams:
                continue
            doc = len(self.grams)
            self.grams.append(grams)
            for g in grams:
                self.postings.setdefault(g, []).append(doc)

    def near_duplicate(self, grams: set[int]) -> bool:
        if not grams:
            return False
        size = len(grams)
        prefix = size - math.ceil(self.threshold * size - 1e-9) + 1
        # the rarest grams first: grams no held-out text has (frequency 0) make the prefix cheapest
        ordered = sorted(grams, key=lambda g: len(self.postings.get(g, ())))[:prefix]
        candidates = {doc for g in ordered for doc in self.postings.get(g, ())}
        for doc in candidates:
            other = self.grams[doc]
            # |B| outside [t|A|, |A|/t] cannot reach the threshold
            if not self.threshold * size <= len(other) <= size / self.threshold:
                continue
            shared = len(grams & other)
            if shared / (size + len(other) - shared) >= self.threshold:
                return True
        return False

    def filter(self, texts: Sequence[str]) -> Decontaminated:
        kept: list[str] = []
        exact = near = 0
        for text in texts:
            normalized = normalize(text)
            if normalized in self.exact:
                exact += 1
            elif self.near_duplicate(shingles(normalized)):
                near += 1
            else:
                kept.append(text)
        return Decontaminated(kept, exact, near)


def decontaminate(texts: Sequence[str], held_out: Iterable[str], threshold: float = NEAR_JACCARD) -> Decontaminated:
    """`texts` without the exact and near duplicates of any `held_out` text (see the module docstring)."""
    return HeldOutIndex(held_out, threshold).filter(texts)
