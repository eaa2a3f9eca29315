"""Each kind of bad input: one clear error naming file:line or the config key, exit code 2, nothing registered."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nerflow.flows import cli

from .corpus import LONG, SHORT, write_conll

MODEL = "bad-input-ner"


@pytest.fixture
def corpus(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        write_conll(d / name, [SHORT[0], SHORT[1], LONG])
    return d


def run_cli(tmp_path: Path, corpus: Path, cache_dir: Path, *overrides: str) -> int:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"experiment: nerflow-bad-input\ncache_dir: {cache_dir}\nregistry:\n  model_name: {MODEL}\n"
                   f"data:\n  dir: {corpus}\n  train: train.txt\n  validation: valid.txt\n  test: test.txt\n")
    return cli.main(["run", str(cfg), *overrides])


def error_message(capsys) -> str:
    """The CLI's closing `error: ...` message (Prefect's own log lines come before it)."""
    err = capsys.readouterr().err
    assert "error: " in err, err[-2000:]
    return err[err.rindex("\nerror: ") + 1:] if "\nerror: " in err else err[err.index("error: "):]


def break_file(path: Path, case: str) -> None:
    # "-DOCSTART- O", "", then SHORT[0] from line 3: John B-PER / Smith I-PER / visited O / Berlin B-LOC / . O
    if case == "empty":
        path.write_text("")
    elif case == "not-utf8":
        path.write_bytes(path.read_bytes().replace(b"Smith", b"Sm\xe9th"))       # line 4
    elif case == "columns":
        path.write_text(path.read_text().replace("visited O", "visited VBD O"))   # line 5
    elif case == "unknown-tag":
        path.write_text(path.read_text().replace("Berlin B-LOC", "Berlin LOCATION"))  # line 6


@pytest.mark.parametrize("case,where", [
    ("empty", r"train\.txt: file is empty"),
    ("not-utf8", r"train\.txt:4: not UTF-8"),
    ("columns", r"train\.txt:5: expected 2 columns"),
    ("unknown-tag", r"train\.txt:6: \[tags_well_formed\]"),
])
def test_bad_data_file_stops_the_run_with_file_and_line(case, where, corpus, tmp_path, cache_dir, mlflow_store, capsys):
    break_file(corpus / "train.txt", case)
    assert run_cli(tmp_path, corpus, cache_dir) == cli.EXIT_BAD_INPUT
    message = error_message(capsys)
    assert re.search(where, message), message
    assert MlflowClient().search_model_versions(f"name='{MODEL}'") == []


def test_missing_file(corpus, tmp_path, cache_dir, mlflow_store, capsys):
    (corpus / "valid.txt").unlink()
    assert run_cli(tmp_path, corpus, cache_dir) == cli.EXIT_BAD_INPUT
    assert "valid.txt: file not found" in capsys.readouterr().err
    assert MlflowClient().search_model_versions(f"name='{MODEL}'") == []


def test_token_tag_length_mismatch_in_jsonl(corpus, tmp_path, cache_dir, mlflow_store, capsys):
    lines = ['{"tokens": ["John", "Smith"], "tags": ["B-PER", "I-PER"]}',
             '{"tokens": ["Anna", "visited", "Paris"], "tags": ["B-PER", "O"]}']
    for name in ("train.jsonl", "valid.jsonl", "test.jsonl"):
        (corpus / name).write_text("\n".join(lines) + "\n")
    code = run_cli(tmp_path, corpus, cache_dir, "data.format=jsonl", "data.train=train.jsonl",
                   "data.validation=valid.jsonl", "data.test=test.jsonl")
    assert code == cli.EXIT_BAD_INPUT
    message = error_message(capsys)
    assert "train.jsonl:2" in message and "tokens_tags_aligned" in message
    assert MlflowClient().search_model_versions(f"name='{MODEL}'") == []


@pytest.mark.parametrize("override,message", [
    ("train.epocs=1", "config key 'train.epocs' does not exist"),
    ("train.epochs=abc", "config key 'train.epochs'"),
    ("data.scheme=iob3", "config key 'data.scheme'"),
])
def test_bad_config_names_the_key(override, message, corpus, tmp_path, cache_dir, capsys):
    assert run_cli(tmp_path, corpus, cache_dir, override) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_validate_command_checks_data_only(corpus, tmp_path, cache_dir, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  dir: {corpus}\n  train: train.txt\n  validation: valid.txt\n  test: test.txt\n")
    assert cli.main(["validate", str(cfg)]) == 0
    assert "data OK" in capsys.readouterr().out
    break_file(corpus / "test.txt", "unknown-tag")
    assert cli.main(["validate", str(cfg)]) == cli.EXIT_BAD_INPUT
    assert "test.txt:6" in capsys.readouterr().err
