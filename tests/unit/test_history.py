"""Champion history: tag encoding and the stack replay, on hand-built entries (no MLflow)."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from nerflow.history import (
    ABANDONED,
    DONE,
    INTENDED,
    MAX_REASON,
    MAX_VALUE,
    UNREADABLE,
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
    settle,
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


def test_a_malformed_or_hand_edited_tag_is_skipped_with_a_warning_not_fatal(caplog):
    """Anyone can add a tag in the MLflow UI; one bad tag must not block every promotion of the model."""
    entries = moves(("promote", None, "1"), ("promote", "1", "2"))
    tags = as_tags(entries) | {entry_tag("champion", 3): "not json",
                               entry_tag("champion", 4): encode(entries[0]),   # value says seq 1
                               "nerflow.champion.champion.notes": "typed in the UI"}
    with caplog.at_level("WARNING", logger="nerflow.history"):
        decoded = decode_all(tags, "champion")
    assert [e for e in decoded if e.state != UNREADABLE] == entries
    assert {e.seq for e in decoded if e.state == UNREADABLE} == {3, 4}
    assert stack(decoded) == ["1", "2"] and rollback_target(decoded) == ("2", "1")
    assert next_seq(decoded) == 5   # a skipped tag's key is never written over
    for key in ("000003", "000004", "champion.notes"):
        assert key in caplog.text


def test_an_intended_move_counts_only_once_the_alias_is_found_where_it_says():
    """A kill between the intended entry and the alias (or between the alias and the done entry) is settled by where
    the alias is: the move happened or it did not; nothing reads as an external move."""
    entries = moves(("promote", None, "1"), ("promote", "1", "2"))
    rollback = new_entry(entries, "rollback", "ada", "2", "1", "bad in prod", state=INTENDED)
    pending = [*entries, rollback]
    assert stack(pending) == ["1", "2"] and rolled_back_versions(pending) == set()   # not replayed while intended
    # killed after the alias moved: the rollback happened
    moved = settle(pending, "1")
    assert moved[-1].state == DONE and stack(moved) == ["1"] and rolled_back_versions(moved) == {"2"}
    assert not external_move(moved, "1") and rollback_target(moved) is None   # no way back to the rolled-back 2
    # killed before: it never happened
    stayed = settle(pending, "2")
    assert stayed[-1].state == ABANDONED and stack(stayed) == ["1", "2"] and rolled_back_versions(stayed) == set()
    assert not external_move(stayed, "2")
    # only the newest entry can still be in flight: an older intended one was never completed by its writer
    later = [*pending, new_entry(pending, "force", "bob", "2", "1", "r")]
    assert settle(later, "1")[2].state == ABANDONED
    # states survive the tag round trip; an entry written before states is done
    assert decode_all(as_tags(pending), "champion")[-1].state == INTENDED
    legacy = json.loads(encode(entries[0]))
    del legacy["state"]
    assert decode_all({entry_tag("champion", 1): json.dumps(legacy)}, "champion")[0].state == DONE


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


def test_an_approval_round_trips_and_moves_the_stack_like_a_promotion():
    entries = moves(("promote", None, "1"), ("approve", "1", "2"))
    [_, back] = decode_all(as_tags(entries), "champion")
    assert back == entries[1] and back.action == "approve" and json.loads(encode(back))["action"] == "approve"
    assert stack(entries) == ["1", "2"] and rollback_target(entries) == ("2", "1")
    # a person approving a version back onto the alias clears its rolled-back mark, as a forced move does
    entries.append(new_entry(entries, "rollback", "ada", "2", "1", "bad in prod"))
    entries.append(new_entry(entries, "approve", "bob", "1", "2", "fixed"))
    assert rolled_back_versions(entries) == set()
