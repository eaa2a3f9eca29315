"""Seeded subsets of a training split, for learning curves (`data.train_fraction`, `data.sample_seed`; nerflow
curve): NER by whole documents (a document's sentences share names and context: splitting one would leak it
across the subset's edge), texts stratified by label (each label keeps its share). A subset that leaves a class
with no example is an error giving the counts: a model cannot learn a type it never sees, and a curve point
without it would measure that, not the amount of data. Validation and test are never sampled."""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from nerflow.data import DataError

T = TypeVar("T")


def by_group(items: Sequence[T], group: Callable[[T], Hashable], fraction: float, seed: int) -> list[T]:
    """round(fraction x groups) whole groups (at least 1), drawn with `seed`, their items in corpus order."""
    groups = list(dict.fromkeys(group(x) for x in items))
    keep = max(1, round(fraction * len(groups)))
    chosen = set(random.Random(seed).sample(groups, keep))
    return [x for x in items if group(x) in chosen]


def stratified(items: Sequence[T], stratum: Callable[[T], Hashable], fraction: float, seed: int) -> list[T]:
    """round(fraction x size) items of each stratum, drawn with `seed`, in corpus order; a stratum left empty is
    the caller's to report (`missing`)."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, x in enumerate(items):
        members[stratum(x)].append(i)
    rng = random.Random(seed)
    chosen = {i for key in sorted(members, key=str)
              for i in rng.sample(members[key], round(fraction * len(members[key])))}
    return [x for i, x in enumerate(items) if i in chosen]


def missing(full: Counter, sample: Counter) -> list[str]:
    """The classes the full split has and the sample has not."""
    return sorted(c for c in full if full[c] and not sample.get(c))


def too_few(fraction: float, seed: int, unit: str, kept: int, total: int, full: Counter, sample: Counter,
            what: str) -> DataError | None:
    """The error for a sample that lost a class, or None."""
    gone = missing(full, sample)
    if not gone:
        return None
    counts = ", ".join(f"{c} ({full[c]} {what} in the training split)" for c in gone[:5])
    more = f" and {len(gone) - 5} more" if len(gone) > 5 else ""
    return DataError(f"data.train_fraction={fraction:g}: the sample (data.sample_seed={seed}) keeps {kept} of "
                     f"{total} {unit} and no example of {counts}{more}; use a larger fraction")
