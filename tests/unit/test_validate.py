"""Data validation: each rule fails (or warns) with its rule id and the line a user has to fix."""
from __future__ import annotations

import json

import pytest

from nerflow.ner.config import NerDataConfig as DataConfig
from nerflow.ner.data import Sentence
from nerflow.ner.validate import Failure, ValidationReport, render_html, validate_corpus


def S(tokens: str | list[str], tags: str | list[str], source: str) -> Sentence:
    split = lambda x: x.split() if isinstance(x, str) else x  # noqa: E731
    return Sentence(split(tokens), split(tags), source)


TRAIN = [S("EU rejects German call", "B-ORG O B-MISC O", "train.txt:1"),
         S("Peter Blackburn", "B-PER I-PER", "train.txt:6"),
         S("BRUSSELS 1996-08-22", "B-LOC O", "train.txt:9")]
CLEAN = {"train": TRAIN,
         "validation": [S("Germany 's representative", "B-LOC O O", "val.txt:1")],
         "test": [S("Japan began", "B-LOC O", "test.txt:1"), S("Nadim Ladki", "B-PER I-PER", "test.txt:4")]}


def by_rule(report: ValidationReport, rule: str) -> list[Failure]:
    return [f for f in report.failures if f.rule == rule]


@pytest.fixture(scope="module")
def clean() -> ValidationReport:
    return validate_corpus(CLEAN, DataConfig())


@pytest.fixture(scope="module")
def broken() -> ValidationReport:
    """One defect per rule, each at a known line (CoNLL: one token per line, sentence source = first token)."""
    corpus = {
        "train": [*TRAIN,
                  S("a b c d e f", "O O O O O O", "train.txt:20"),       # too long for max_tokens=5
                  S("Bonn", "X-LOC", "train.txt:30")],                   # malformed tag
        "validation": [S([], [], "val.txt:3"),                            # empty sentence
                       S(["in", " ", "Bonn"], ["O", "O", "B-LOC"], "val.txt:10"),  # blank token, line 11
                       S("Bonn is", "B-LOC O O", "val.txt:20")],          # 2 tokens, 3 tags
        "test": [S("she visited Acme Corp", "O O B-COMPANY I-COMPANY", "test.txt:40"),  # unseen type, line 42
                 S("Acme", "B-COMPANY", "test.txt:50"),
                 S("the UN", "O I-ORG", "test.txt:60")],                 # I- after O, line 61
    }
    return validate_corpus(corpus, DataConfig(max_tokens=5, invalid_iob2="repair"))


def test_clean_corpus_passes(clean):
    assert clean.passed and clean.failures == [] and clean.warnings == []
    assert clean.metrics["n_sentences_train"] == 3 and clean.metrics["n_tokens_train"] == 8
    assert clean.metrics["n_sentences_test"] == 2 and clean.metrics["n_tokens_validation"] == 3
    assert clean.metrics["invalid_iob2_count"] == 0 and clean.metrics["test_in_train_share"] == 0
    assert clean.gx_results and all(r["success"] for r in clean.gx_results)
    assert "passed" in clean.summary()


@pytest.mark.parametrize("rule, sources", [
    ("sentence_not_empty", ["val.txt:3"]),
    ("token_not_blank", ["val.txt:11"]),
    ("tokens_tags_aligned", ["val.txt:20"]),
    ("tags_well_formed", ["train.txt:30"]),
    ("sentence_length", ["train.txt:20"]),      # the empty sentence is reported once, as sentence_not_empty
    ("entity_types_in_train", ["test.txt:42"]),  # one failure per type, at its first occurrence
])
def test_each_rule_points_at_the_line_to_fix(broken, rule, sources):
    assert not broken.passed
    assert [f.source for f in by_rule(broken, rule)] == sources
    assert broken.metrics[f"failures_{rule}"] == len(sources)


def test_messages_name_the_problem(broken):
    assert "'COMPANY'" in by_rule(broken, "entity_types_in_train")[0].message
    assert "'X-LOC'" in by_rule(broken, "tags_well_formed")[0].message
    assert "data.max_tokens=5" in by_rule(broken, "sentence_length")[0].message
    assert "2 tokens but 3 tag" in by_rule(broken, "tokens_tags_aligned")[0].message


def test_repair_mode_warns_and_counts_invalid_iob2(broken):
    assert broken.metrics["invalid_iob2_count"] == 1
    assert not by_rule(broken, "iob2_continuation")
    [warning] = [w for w in broken.warnings if "B-X" in w]
    assert "1 I-X" in warning and "test.txt:61" in warning and "iob1" not in warning


def test_summary_and_json(broken):
    summary = broken.summary()
    assert "failed" in summary and "val.txt:3: [sentence_not_empty]" in summary
    data = json.loads(json.dumps(broken.to_json()))
    assert data["passed"] is False and {"rule", "source", "message"} <= set(data["failures"][0])


IOB1_STYLE = {"train": [S("Peter Blackburn visited Bonn", "I-PER I-PER O I-LOC", "train.txt:1"),
                        S("EU and UN", "I-ORG O I-ORG", "train.txt:6")],
              "validation": [S("Bonn", "I-LOC", "val.txt:1")],
              "test": [S("Peter", "I-PER", "test.txt:1")]}


def test_fail_mode_reports_each_invalid_continuation_with_iob1_hint():
    report = validate_corpus(IOB1_STYLE, DataConfig(invalid_iob2="fail"))
    failures = by_rule(report, "iob2_continuation")
    assert not report.passed
    assert [f.source for f in failures] == ["train.txt:1", "train.txt:4", "train.txt:6", "train.txt:8",
                                            "val.txt:1", "test.txt:1"]
    assert all("data.scheme=iob1" in f.message for f in failures)
    assert report.metrics["invalid_iob2_count"] == 6


def test_repair_mode_passes_with_iob1_hint():
    report = validate_corpus(IOB1_STYLE, DataConfig(invalid_iob2="repair"))
    assert report.passed and report.metrics["invalid_iob2_count"] == 6
    assert any("IOB1" in w and "data.scheme=iob1" in w for w in report.warnings)


def test_declared_scheme_decides_what_is_well_formed():
    corpus = {"train": [S("Peter Blackburn in Bonn", "B-PER E-PER O S-LOC", "train.txt:1")],
              "validation": [S("Bonn", "S-LOC", "val.txt:1")], "test": [S("Bonn", "S-LOC", "test.txt:1")]}
    assert validate_corpus(corpus, DataConfig(scheme="bioes")).passed
    as_iob2 = validate_corpus(corpus, DataConfig(scheme="iob2"))
    assert [f.source for f in by_rule(as_iob2, "tags_well_formed")] == ["train.txt:2", "train.txt:4",
                                                                      "val.txt:1", "test.txt:1"]
    # declared IOB1: I- openings are legal, nothing to repair
    iob1 = validate_corpus(IOB1_STYLE, DataConfig(scheme="iob1", invalid_iob2="fail"))
    assert iob1.passed and iob1.warnings == [] and iob1.metrics["invalid_iob2_count"] == 0


def test_jsonl_sources_keep_the_sentence_line():
    corpus = {"train": [S(["a", "b", ""], ["O", "O", "O"], "data.jsonl:7")],
              "validation": [S("a", "O", "v.jsonl:1")], "test": [S("a", "O", "t.jsonl:1")]}
    report = validate_corpus(corpus, DataConfig(format="jsonl"))
    [failure] = report.failures
    assert failure.rule == "token_not_blank" and failure.source == "data.jsonl:7"
    assert "token 3" in failure.message


def test_min_tokens_bound():
    corpus = {**CLEAN, "validation": [S("Bonn", "B-LOC", "val.txt:5")]}
    report = validate_corpus(corpus, DataConfig(min_tokens=2))
    assert [f.source for f in by_rule(report, "sentence_length")] == ["val.txt:5"]


def test_test_in_train_share_is_exact():
    test = [S("Peter Blackburn", "B-PER I-PER", "test.txt:1"),     # in train (same tokens, any tags)
            S("Peter Blackburn", "O O", "test.txt:4"),             # in train again
            S("EU rejects German call", "B-ORG O B-MISC O", "test.txt:7"),
            S("EU rejects", "B-ORG O", "test.txt:12")]             # a prefix is not verbatim
    report = validate_corpus({**CLEAN, "test": test}, DataConfig())
    assert report.metrics["test_in_train_share"] == 0.75
    assert report.passed and any("75%" in w for w in report.warnings)
    half = validate_corpus({**CLEAN, "test": test[1:3] + CLEAN["test"]}, DataConfig())
    assert half.metrics["test_in_train_share"] == 0.5 and half.warnings == []


def test_failures_are_capped_but_all_counted():
    many = [S("Bonn", "LOC", f"train.txt:{3 * i + 1}") for i in range(60)]
    report = validate_corpus({**CLEAN, "train": TRAIN + many}, DataConfig())
    assert len(by_rule(report, "tags_well_formed")) == 50
    assert report.metrics["failures_tags_well_formed"] == 60
    assert "60 problem" in report.summary()
    assert report.problem_lines()[-1] == "... and 10 more (a report keeps the first 50 of each rule)"


def test_render_html_for_passing_and_failing_reports(clean, broken):
    for report, status in ((clean, "passed"), (broken, "FAILED")):
        before = json.dumps(report.to_json())
        page = render_html(report)
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        assert f"nerflow data validation: {status}" in page
        assert page.count("<iframe") == len(report.gx_results) > 0   # GX's own page per validation run
        assert json.dumps(report.to_json()) == before                # rendering leaves the report alone
    assert "test.txt:42" in render_html(broken)


def test_validation_is_quiet(capfd):
    """No GX progress bars or log lines on the console: a pipeline's log should show nerflow's report only."""
    validate_corpus(CLEAN, DataConfig())
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_the_validate_command_lists_every_problem_with_its_line_then_the_count(tmp_path, capsys):
    """Seven bad tags (more than the five a run's error hint counts from): `nerflow validate` prints each with its
    file:line on stdout, then one error line with the count; a pipe gets them all."""
    from nerflow.flows import cli
    from nerflow.flows.errors import EXIT_BAD_INPUT

    sentence = "John B-PER\nvisited O\nBonn B-LOC\n\n"
    bad = "John PERSON\nvisited O\nBonn B-LOC\n\n"
    # line 1 -DOCSTART-, line 2 blank; each sentence takes 4 lines: sentence i starts at line 3 + 4 * i
    (tmp_path / "train.txt").write_text("-DOCSTART- O\n\n" + sentence + bad * 7)
    for name in ("valid.txt", "test.txt"):
        (tmp_path / name).write_text("-DOCSTART- O\n\n" + sentence)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  dir: {tmp_path}\n  train: train.txt\n  validation: valid.txt\n  test: test.txt\n")
    assert cli.main(["validate", str(cfg)]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    listed = [line for line in out.splitlines() if "[tags_well_formed]" in line]
    assert [line.split(": [")[0] for line in listed] == [f"{tmp_path / 'train.txt'}:{3 + 4 * i}" for i in range(1, 8)]
    assert [line for line in err.splitlines() if line.startswith("error: ")] == \
        ["error: data validation failed: 7 problem(s) (tags_well_formed: 7), listed above"]
    assert "lists them" not in err   # no hint pointing at the command that just ran
