"""Tag schemes: conversion to IOB2, repair, strict span decoding. Every expected value is worked out by hand."""
from __future__ import annotations

import pytest

from nerflow.ner.schemes import (
    bioes_to_iob2,
    entity_spans,
    entity_types,
    invalid_iob2_positions,
    iob1_to_iob2,
    is_well_formed,
    repair_iob2,
    split_tag,
    to_iob2,
)


@pytest.mark.parametrize("tag, expected", [
    ("O", ("O", "")),
    ("B-PER", ("B", "PER")),
    ("I-WORK-OF-ART", ("I", "WORK-OF-ART")),     # only the first '-' separates prefix and type
    ("S-LOC", ("S", "LOC")),
    ("PER", ("", "PER")),                        # no prefix
    ("B-", ("B", "")),
])
def test_split_tag(tag, expected):
    assert split_tag(tag) == expected


# --- IOB1 -> IOB2 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("iob1, iob2", [
    # IOB1 opens entities with I-
    (["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
    # B- only between two adjacent entities of one type: "John Smith | Mary Jones"
    (["I-PER", "I-PER", "B-PER", "I-PER"], ["B-PER", "I-PER", "B-PER", "I-PER"]),
    # two single-token entities of one type side by side
    (["I-PER", "B-PER"], ["B-PER", "B-PER"]),
    # adjacent entities of different types need no B- in IOB1
    (["I-ORG", "I-LOC", "I-LOC"], ["B-ORG", "B-LOC", "I-LOC"]),
    (["O", "O"], ["O", "O"]),
    ([], []),
    (["I-WORK-OF-ART", "I-WORK-OF-ART"], ["B-WORK-OF-ART", "I-WORK-OF-ART"]),
])
def test_iob1_to_iob2(iob1, iob2):
    assert iob1_to_iob2(iob1) == iob2
    assert to_iob2(iob1, "iob1") == iob2


def test_iob1_b_between_adjacent_entities_keeps_them_apart():
    # "I-PER I-PER B-PER" is two people; after conversion strict decoding must still see two.
    assert entity_spans(to_iob2(["I-PER", "I-PER", "B-PER"], "iob1")) == [("PER", 0, 2), ("PER", 2, 3)]


# --- BIOES -> IOB2 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bioes, iob2", [
    (["S-PER"], ["B-PER"]),
    (["B-PER", "E-PER"], ["B-PER", "I-PER"]),
    (["B-ORG", "I-ORG", "E-ORG", "O", "S-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O", "B-LOC"]),
    (["S-PER", "S-PER"], ["B-PER", "B-PER"]),                     # two adjacent one-token entities stay two
    (["B-PER", "E-PER", "B-PER", "E-PER"], ["B-PER", "I-PER", "B-PER", "I-PER"]),
    (["S-WORK-OF-ART", "O"], ["B-WORK-OF-ART", "O"]),
    (["O"], ["O"]),
    ([], []),
])
def test_bioes_to_iob2(bioes, iob2):
    assert bioes_to_iob2(bioes) == iob2
    assert to_iob2(bioes, "bioes") == iob2


@pytest.mark.parametrize("tags", [["PER"], ["O", "LOC", "O"], ["X"]])
def test_bioes_to_iob2_leaves_malformed_tags_unchanged(tags):
    # validation rejects these earlier; conversion must not invent '-PER'
    assert bioes_to_iob2(tags) == tags
    assert to_iob2(tags, "bioes") == tags


@pytest.mark.parametrize("bioes, iob2", [
    (["O", "E-PER"], ["O", "B-PER"]),                 # E- without B-: would be I-PER after O
    (["I-PER", "E-PER"], ["B-PER", "I-PER"]),         # I- at the start
    (["S-PER", "E-LOC"], ["B-PER", "B-LOC"]),         # continues another type
])
def test_to_iob2_from_bioes_always_returns_valid_iob2(bioes, iob2):
    out = to_iob2(bioes, "bioes")
    assert out == iob2
    assert invalid_iob2_positions(out) == []


def test_to_iob2_leaves_iob2_untouched_and_returns_a_copy():
    tags = ["O", "I-PER", "B-LOC"]                    # broken, but iob2 input is repaired by canonicalize only
    out = to_iob2(tags, "iob2")
    assert out == tags and out is not tags


@pytest.mark.parametrize("scheme", ["iob1", "bioes"])
def test_to_iob2_does_not_modify_its_input(scheme):
    tags = ["O", "I-PER", "E-PER"] if scheme == "bioes" else ["O", "I-PER"]
    before = list(tags)
    to_iob2(tags, scheme)
    assert tags == before


# --- repair / invalid positions -----------------------------------------------------------------------------

@pytest.mark.parametrize("tags, bad", [
    (["I-PER", "I-PER"], [0]),                         # at the start
    (["O", "I-PER", "I-PER"], [1]),                    # after O
    (["B-PER", "I-LOC", "I-LOC"], [1]),                # after another type
    (["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"], [3, 5]),
    (["B-PER", "I-PER", "I-PER"], []),
    (["B-PER", "B-PER", "I-PER"], []),
    (["B-WORK-OF-ART", "I-WORK-OF-ART"], []),
    (["B-WORK-OF-ART", "I-WORK"], [1]),                # a type that shares a prefix is still another type
    (["O"], []),
    ([], []),
])
def test_invalid_iob2_positions(tags, bad):
    assert invalid_iob2_positions(tags) == bad


@pytest.mark.parametrize("tags, repaired", [
    (["I-PER", "I-PER"], ["B-PER", "I-PER"]),
    (["O", "I-PER", "O"], ["O", "B-PER", "O"]),
    (["B-PER", "I-LOC", "I-LOC"], ["B-PER", "B-LOC", "I-LOC"]),
    (["O", "I-WORK-OF-ART"], ["O", "B-WORK-OF-ART"]),
    (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),   # already valid: unchanged
])
def test_repair_iob2(tags, repaired):
    before = list(tags)
    out = repair_iob2(tags)
    assert out == repaired
    assert tags == before                                 # input not modified
    assert repair_iob2(out) == out                        # idempotent
    assert invalid_iob2_positions(out) == []


# --- strict span decoding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tags, spans", [
    # "John Smith lives in New York ." -> PER(0,2) LOC(4,6); end index is exclusive
    (["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"], [("PER", 0, 2), ("LOC", 4, 6)]),
    # entity running to the end of the sentence
    (["O", "B-ORG", "I-ORG", "I-ORG"], [("ORG", 1, 4)]),
    # B- right after B- of the same type: two entities
    (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    # type change without B-: strict mode drops the orphan I-LOC
    (["B-PER", "I-LOC"], [("PER", 0, 1)]),
    # I- after O opens nothing in strict IOB2
    (["O", "I-PER", "I-PER"], []),
    (["I-PER"], []),
    # I- of the right type after an interruption does not continue the old entity
    (["B-PER", "O", "I-PER"], [("PER", 0, 1)]),
    # hyphenated types
    (["B-WORK-OF-ART", "I-WORK-OF-ART", "O", "B-PRODUCT"], [("WORK-OF-ART", 0, 2), ("PRODUCT", 3, 4)]),
    (["B-WORK-OF-ART", "I-WORK"], [("WORK-OF-ART", 0, 1)]),
    (["O", "O"], []),
    ([], []),
])
def test_entity_spans(tags, spans):
    assert entity_spans(tags) == spans


def test_entity_spans_after_repair_counts_the_opened_entity():
    # lenient reading: repair first, then the I-PER after O is a PER entity
    assert entity_spans(repair_iob2(["O", "I-PER", "I-PER"])) == [("PER", 1, 3)]


def test_entity_types():
    assert entity_types(["O", "B-PER", "I-PER", "B-WORK-OF-ART"]) == {"PER", "WORK-OF-ART"}
    assert entity_types(["O"]) == set()


# --- well-formedness per scheme -----------------------------------------------------------------------------

@pytest.mark.parametrize("tag, iob2, iob1, bioes", [
    ("O", True, True, True),
    ("B-PER", True, True, True),
    ("I-PER", True, True, True),
    ("B-WORK-OF-ART", True, True, True),
    ("S-PER", False, False, True),
    ("E-PER", False, False, True),
    ("PER", False, False, False),        # no prefix
    ("B-", False, False, False),         # no type
    ("B- ", False, False, False),        # whitespace type
    ("X-PER", False, False, False),      # unknown prefix
    ("b-PER", False, False, False),      # prefixes are case-sensitive
    ("o", False, False, False),
    ("", False, False, False),
    ("-PER", False, False, False),
])
def test_is_well_formed(tag, iob2, iob1, bioes):
    assert (is_well_formed(tag, "iob2"), is_well_formed(tag, "iob1"), is_well_formed(tag, "bioes")) == \
        (iob2, iob1, bioes)
