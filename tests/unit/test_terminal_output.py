"""What the terminal and a pipe get: aligned plain tables (no Markdown, no colour codes when piped), the gate's
decision with its reason once, the task's own headline metric, "did you mean" for a mistyped command, and a closed
pipe ending the command quietly with 141 like a shell tool."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nerflow.flows import cli
from nerflow.flows.tables import decision_text, render
from nerflow.promotion import GateRules, comparison_markdown, decide
from nerflow.textcat.scoring import gate_tables as textcat_gate_tables

ANSI = re.compile(r"\x1b\[")
NERFLOW = Path(sys.executable).with_name("nerflow")


def table(per_type: dict[str, float], support: int = 30) -> dict:
    return {"f1": sum(per_type.values()) / len(per_type), "metric": "micro F1",
            "per_type": {t: {"precision": f, "recall": f, "f1": f, "support": support} for t, f in per_type.items()}}


def test_a_piped_table_is_plain_aligned_and_one_line_per_row():
    text = render(["type", "support", "F1"], [["PER", 12, 0.5], ["A_MUCH_LONGER_TYPE", 3, None], ["[b]x", 7, 1.0]],
                  right={"support", "F1"}, terminal=False)
    lines = text.split("\n")
    assert len(lines) == 4 and not ANSI.search(text) and "|" not in text and "─" not in text
    assert lines[0] == "type                support      F1"
    assert lines[2] == "A_MUCH_LONGER_TYPE        3       -"
    assert lines[3].startswith("[b]x ")   # user data is never read as markup
    assert lines[1] == "PER                      12  0.5000"   # numbers right-aligned under their header
    assert all(line == line.rstrip() for line in lines)


def test_a_table_on_a_terminal_has_a_bold_header():
    assert ANSI.search(render(["a", "b"], [["x", "y"]], terminal=True))


def test_the_gate_decision_reads_as_a_table_with_the_reason_left_to_the_error_line():
    rejected = decide(table({"PER": 0.8, "LOC": 0.9}), table({"PER": 0.9, "LOC": 0.5}), GateRules(), True)
    assert not rejected.accepted
    text = decision_text(rejected, terminal=False)
    assert "|" not in text and "**" not in text and "---" not in text
    assert rejected.reason not in text            # said once, by the command's error line (exit 4)
    header, *rows = text.split("\n\n")[0].split("\n")
    assert header.split() == ["type", "support", "chal.", "P", "chal.", "R", "chal.", "F1", "champ.", "P", "champ.",
                              "R", "champ.", "F1", "ΔF1", "flag"]
    assert [r.split()[0] for r in rows] == ["LOC", "PER"] and rows[1].endswith("-0.1000  drop: rejects")
    assert text.endswith("Micro F1: challenger 0.8500, champion 0.7000")


def test_a_first_champion_shows_the_challenger_alone_and_the_verdict():
    accepted = decide(table({"PER": 0.8}), None, GateRules(), True)
    text = decision_text(accepted, terminal=False)
    assert text.split("\n")[0].split() == ["type", "support", "chal.", "P", "chal.", "R", "chal.", "F1"]
    assert "champion none yet" in text and text.endswith(f"accepted: {accepted.reason}")
    assert text.count(accepted.reason) == 1


def test_a_decision_without_scores_shows_no_table_and_says_so():
    rolled_back = decide({"f1": 0.0, "per_type": {}}, None, GateRules(), True, challenger_rolled_back=True)
    text = decision_text(rolled_back, terminal=False)
    assert text == "nothing compared: the gate decided without scoring"
    assert "0.0000" not in text and "type" not in text


def test_the_comparison_names_the_metric_the_task_compares():
    gold = [["pos"], ["neg"], ["pos"], ["neg"]]
    served = {"labels": ["neg", "pos"], "pred": [["pos"], ["neg"], ["neg"], ["neg"]]}
    chal, champ, restricted = textcat_gate_tables(gold, {"2": served, "1": served}, ("2", "1"))
    textcat = decide(chal, champ, GateRules(), True, restricted=restricted)
    assert "Macro F1: challenger" in comparison_markdown(textcat) and "Micro" not in comparison_markdown(textcat)
    assert "Macro F1: challenger" in decision_text(textcat, terminal=False)
    ner = decide(table({"PER": 0.8}), None, GateRules(), True)
    assert "Micro F1: challenger 0.8000" in comparison_markdown(ner)


@pytest.mark.parametrize("argv, said", [
    (["rnu"], "error: unknown command 'rnu'; did you mean 'run'?"),
    (["cache", "lss"], "error: unknown command 'cache lss'; did you mean 'cache ls'?"),
    (["schedul", "ls"], "error: unknown command 'schedul'; did you mean 'schedule'?"),
    (["rerun", "abc", "--from", "trian"], "error: --from: unknown value 'trian'; did you mean 'train'?"),
    (["xyzzy"], "error: unknown command 'xyzzy'"),
])
def test_a_mistyped_command_names_the_closest_one(argv, said, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    first, usage = capsys.readouterr().err.split("\n", 1)
    assert first == said and usage.startswith("usage: nerflow")


def test_models_with_a_mistyped_history_says_so_before_asking_the_registry(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["models", "histroy", "my-model"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'models histroy'; did you mean 'models "
                                              "history'?")
    assert not (tmp_path / "mlruns").exists()   # no tracking store was opened for it


def test_a_closed_pipe_ends_the_command_quietly_with_141(tmp_path):
    """`nerflow cache ls | head -n1` with more lines than a pipe holds: the listing is still being written when
    head exits, as a real shell runs it."""
    # ~50 bytes a line, ~150 KB in all: more than the pipe (64 KiB) and head's one read hold, so nerflow is still
    # writing when head exits, however the two are scheduled
    for i in range(3000):
        (tmp_path / "cache" / "train" / f"key{i:04d}").mkdir(parents=True)
    err = tmp_path / "stderr.txt"
    done = subprocess.run(["bash", "-c", f'"{NERFLOW}" cache ls --cache-dir "{tmp_path / "cache"}" 2>"{err}" | '
                                         'head -n1; exit "${PIPESTATUS[0]}"'],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("train ") and done.stdout.count("\n") == 1
    assert done.returncode == 141, err.read_text()[-2000:]   # 128 + SIGPIPE, as `yes | head -n1` reports
    assert err.read_text() == ""   # no traceback, no "This is a bug", no "Exception ignored"
