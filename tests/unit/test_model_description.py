"""The registered model's description (nerflow.model_description): purpose and the champion history table, newest
first, rendered from hand-built history entries (no MLflow)."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from nerflow import history, model_description
from nerflow.history import Evidence

T0 = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
ABOUT = model_description.About("3", "token-classification", ("PER", "ORG", "LOC"), "conll2003", "all-MiniLM-L6-v2")


def moves() -> list[history.Entry]:
    entries: list[history.Entry] = []
    for i, (action, actor, frm, to, reason, ev) in enumerate([
            ("promote", "ci", None, "1", "no champion yet", Evidence(challenger_f1=0.7)),
            ("promote", "ci", "1", "2", "better", Evidence(challenger_f1=0.8, champion_f1=0.7)),
            ("force", "alice", "2", "3", "hotfix | ticket 7\nurgent", Evidence()),
            ("rollback", "bob", "3", "2", "rolled back from version 3", Evidence())]):
        entries.append(history.new_entry(entries, action, actor, frm, to, reason, ev, now=T0 + timedelta(minutes=i)))
    return entries


def table_rows(text: str) -> list[list[str]]:
    section = text.split(model_description.HEADING, 1)[1]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in section.splitlines()
            if re.match(r"\| (v\d+|—) \|", line)]


def test_the_history_table_lists_every_move_newest_first_with_who_when_decision_and_f1():
    text = model_description.render("ner", "champion", ABOUT, moves())
    rows = table_rows(text)
    assert [r[0] for r in rows] == ["v2", "v3", "v2", "v1"]              # the champion after each move, newest first
    assert rows[0][1:5] == ["2026-12-03 20:03", "bob", "rolled back", "0.8000 (at v2's promotion)"]
    assert rows[1][2:6] == ["alice", "forced", "—", "v2"]                  # v3 was never gated: no score to show
    assert rows[1][6] == "hotfix \\| ticket 7 urgent"                      # one line, pipes escaped: the table holds
    assert rows[2][3:5] == ["promoted by the gate", "0.8000 (vs 0.7000)"]
    assert "@champion is version 2." in text and "`PER`, `ORG`, `LOC`" in text and "`conll2003`" in text


def test_moves_that_never_happened_are_not_rows_and_an_empty_history_says_so():
    entries = moves()
    entries.append(history.new_entry(entries, "promote", "ci", "2", "4", "killed", state=history.INTENDED))
    entries.append(history.new_entry(entries, "promote", "ci", "2", "5", "killed", state=history.ABANDONED))
    assert [r[0] for r in table_rows(model_description.render("ner", "champion", ABOUT, entries))] == \
        ["v2", "v3", "v2", "v1"]
    empty = model_description.render("ner", "champion", ABOUT, [])
    assert model_description.HEADING in empty and "No moves yet." in empty and "No version is @champion yet" in empty


def test_a_long_history_keeps_the_newest_rows_within_mlflows_description_limit():
    entries: list[history.Entry] = []
    for i in range(200):
        entries.append(history.new_entry(entries, "force", "someone with a long name " * 3, str(i), str(i + 1),
                                         "x" * 400, now=T0 + timedelta(minutes=i)))
    text = model_description.render("ner", "champion", ABOUT, entries)
    assert len(text) <= model_description.MAX_CHARS
    rows = table_rows(text)
    assert rows[0][0] == "v200" and len(rows) < 200
    assert f"{200 - len(rows)} older moves: `nerflow models history ner`" in text
