"""Tagging schemes. Everything inside nerflow is IOB2; IOB1 and BIOES are converted on the way in.

Entity decoding follows seqeval's strict IOB2 mode: only `B-X` opens an entity and `I-X` of the same type extends it,
so the spans a served model returns are exactly the entities that were scored.
"""
from __future__ import annotations

from typing import Literal

Scheme = Literal["iob2", "iob1", "bioes"]
PREFIXES: dict[str, set[str]] = {"iob2": {"B", "I"}, "iob1": {"B", "I"}, "bioes": {"B", "I", "E", "S"}}


def split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''). Types may contain '-' (e.g. 'B-WORK-OF-ART')."""
    if tag == "O":
        return "O", ""
    prefix, sep, etype = tag.partition("-")
    return (prefix, etype) if sep else ("", tag)


def is_well_formed(tag: str, scheme: Scheme) -> bool:
    prefix, etype = split_tag(tag)
    return tag == "O" or (prefix in PREFIXES[scheme] and etype != "" and not etype.isspace())


def invalid_iob2_positions(tags: list[str]) -> list[int]:
    """Indices of `I-X` that do not continue an `X` entity (after `O`, another type, or at the start)."""
    bad, prev_type = [], ""
    for i, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        if prefix == "I" and etype != prev_type:
            bad.append(i)
        prev_type = etype if prefix in ("B", "I") else ""
    return bad


def repair_iob2(tags: list[str]) -> list[str]:
    """Turn each `I-X` that opens an entity into `B-X` (the lenient reading of a broken sequence)."""
    out = list(tags)
    for i in invalid_iob2_positions(tags):
        out[i] = "B-" + split_tag(tags[i])[1]
    return out


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 opens entities with I-; B- only separates two adjacent entities of one type."""
    return repair_iob2(tags)


def bioes_to_iob2(tags: list[str]) -> list[str]:
    """S-X -> B-X, E-X -> I-X; `O`, B-/I- and malformed tags (no BIOES prefix) are left unchanged."""
    out = []
    for tag in tags:
        prefix, etype = split_tag(tag)
        out.append({"S": "B", "E": "I"}[prefix] + "-" + etype if prefix in ("S", "E") else tag)
    return out


def to_iob2(tags: list[str], scheme: Scheme) -> list[str]:
    """Declared scheme -> valid IOB2 (I-X that opens an entity becomes B-X); plain IOB2 is returned as given."""
    if scheme == "iob2":
        return list(tags)
    if scheme == "iob1":
        return iob1_to_iob2(tags)
    return repair_iob2(bioes_to_iob2(tags))


def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Strict IOB2 entities as (type, first index, end index exclusive)."""
    spans, start, etype = [], None, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, t = split_tag(tag)
        if start is not None and not (prefix == "I" and t == etype):
            spans.append((etype, start, i))
            start = None
        if prefix == "B":
            start, etype = i, t
    return spans


def entity_types(tags: list[str]) -> set[str]:
    return {split_tag(t)[1] for t in tags if t != "O"}
