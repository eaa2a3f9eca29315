"""Champion history: tag encoding and the stack replay, on hand-built entries (no MLflow)."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from nerflow.history import (
    MAX_REASON,
    MAX_VALUE,
    Entry,
    Evidence,
    decode_all,
    encode,
    entry_tag,
    external_move,
    new_entry,
    next_seq,
    rollback_target,
    rolled_back_versions,
    stack,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def moves(*steps: tuple[str, str | None, str | None]) -> list[Entry]:
    """Build a history the way the caller does: each entry from the ones before it."""
    entries: list[Entry] = []
    for i, (action, old, new) in enumerate(steps):
        entries.append(new_entry(entries, action, "ada", old, new, f"step {i}", now=T0 + timedelta(minutes=i)))
    return entries


def as_tags(entries: list[Entry], alias: str = "champion") -> dict[str, str]:
    return {entry_tag(alias, e.seq): encode(e) for e in entries}


def test_tag_key_format():
    assert entry_tag("champion", 3) == "nerflow.champion.champion.000003"


def test_encode_decode_round_trip():
    ev = Evidence(challenger_f1=0.91, champion_f1=0.88, test_data_hash="abc123", mlflow_run_id="r1",
                  prefect_flow_run_id=None)
    e = new_entry([], "promote", "ada", None, "1", "no champion yet", ev, now=T0)
    assert (e.seq, e.time) == (1, "2024-05-01T12:00:00+00:00")
    [back] = decode_all({entry_tag("champion", 1): encode(e)}, "champion")
    assert back == e
    assert json.loads(encode(e))["evidence"]["test_data_hash"] == "abc123"


def test_decode_sorts_by_seq_and_ignores_unrelated_tags():
    entries = moves(("promote", None, "1"), ("promote", "1", "2"), ("promote", "2", "3"))
    tags = dict(reversed(list(as_tags(entries).items())))  # insertion order must not matter
    tags |= {"nerflow.champion.staging.000001": encode(entries[0]), "owner": "team-a",
             "nerflow.champion.champion.notes": "x"}
    decoded = decode_all(tags, "champion")
    assert [e.seq for e in decoded] == [1, 2, 3]
    assert next_seq(decoded) == 4 and next_seq([]) == 1


def test_decode_refuses_a_hand_edited_entry():
    e = new_entry([], "promote", "ada", None, "1", "r", now=T0)
    with pytest.raises(ValueError, match="000002"):
        decode_all({entry_tag("champion", 2): encode(e)}, "champion")  # value says seq 1
    with pytest.raises(ValueError, match="000001"):
        decode_all({entry_tag("champion", 1): "not json"}, "champion")


def test_stack_replay():
    entries = moves(("promote", None, "1"), ("promote", "1", "2"), ("force", "2", "3"), ("external", "3", "5"))
    assert stack(entries) == ["1", "2", "3", "5"]
    # re-promoting the champion does not stack it twice
    assert stack(moves(("promote", None, "1"), ("promote", "1", "1"))) == ["1"]


def test_rollback_twice_in_a_row_goes_two_back():
    entries = moves(("promote", None, "1"), ("promote", "1", "2"), ("promote", "2", "3"))
    assert rollback_target(entries) == ("3", "2")
    entries.append(new_entry(entries, "rollback", "ada", "3", "2", "bad in prod"))
    assert rollback_target(entries) == ("2", "1")
    entries.append(new_entry(entries, "rollback", "ada", "2", "1", "also bad"))
    assert stack(entries) == ["1"]
    assert rollback_target(entries) is None


def test_rollback_with_nothing_before_is_none():
    assert rollback_target([]) is None
    assert rollback_target(moves(("promote", None, "1"))) is None


def test_rolled_back_versions():
    entries = moves(("promote", None, "1"), ("promote", "1", "2"), ("promote", "2", "3"),
                    ("rollback", "3", "2"), ("rollback", "2", "1"))
    assert rolled_back_versions(entries) == {"2", "3"}
    # a person forcing a version back clears its mark: the gate may compare it again later
    entries.append(new_entry(entries, "force", "bob", "1", "3", "fixed upstream"))
    assert rolled_back_versions(entries) == {"2"}


def test_external_move_detection():
    entries = moves(("promote", None, "1"), ("promote", "1", "2"))
    assert not external_move(entries, "2")
    assert external_move(entries, "7")  # moved in the MLflow UI
    assert external_move(entries, None)  # alias deleted in the UI
    assert external_move([], "4")  # set before nerflow kept a history
    assert not external_move([], None)
    entries.append(new_entry(entries, "external", "unknown", "2", "7", "alias moved outside nerflow"))
    assert not external_move(entries, "7")
    assert rollback_target(entries) == ("7", "2")


def test_external_deletion_empties_the_stack():
    entries = moves(("promote", None, "1"), ("promote", "1", "2"), ("external", "2", None))
    assert stack(entries) == [] and rollback_target(entries) is None
    assert not external_move(entries, None)


def test_entry_size_bound_with_a_huge_reason():
    e = new_entry([], "force", "a" * 1000, "1", "2", "é" * 10_000,
                  Evidence(test_data_hash="h" * 1000, mlflow_run_id="r" * 1000))
    text = encode(e)
    assert len(text) < MAX_VALUE
    data = json.loads(text)
    assert len(data["reason"]) == MAX_REASON and data["reason"].endswith("…")


def test_unknown_action_refused():
    with pytest.raises(ValueError, match="undo"):
        new_entry([], "undo", "ada", None, "1", "r")
