"""Capturing what the model reads (nerflow.capture): opt-in only, size-bounded and rotated, safe with several
writer processes, private to the serving account, and never a reason for a prediction to fail; the served pyfunc
models and `nerflow predict --flow` capture their inputs when NERFLOW_CAPTURE_DIR is set and nothing otherwise."""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from nerflow.capture import (
    DIR_ENV,
    FILES_ENV,
    LOCK_NAME,
    MAX_MB_ENV,
    Capture,
    capture_files,
    capture_from_env,
    read_capture,
    read_captured_documents,
)
from nerflow.config import ConfigError
from nerflow.data import DataError

ENV = (DIR_ENV, MAX_MB_ENV, FILES_ENV)


@pytest.fixture(autouse=True)
def no_capture_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def lines_of(folder: Path) -> list[dict]:
    return [json.loads(line) for path in capture_files(folder) for line in path.read_text("utf-8").splitlines()]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------------ opting in
@pytest.mark.parametrize("value", [None, "", "  "])
def test_nothing_is_captured_unless_the_variable_names_a_folder(value, monkeypatch):
    if value is not None:
        monkeypatch.setenv(DIR_ENV, value)
    monkeypatch.setenv(MAX_MB_ENV, "not checked when capture is off")
    assert capture_from_env() is None


def test_the_variables_give_the_folder_and_the_bounds(tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "capture"))
    capture = capture_from_env()
    assert (capture.folder, capture.max_bytes, capture.max_files) == (tmp_path / "capture", 16 * 2**20, 8)
    assert not (tmp_path / "capture").exists()           # nothing written until something is captured
    monkeypatch.setenv(MAX_MB_ENV, "0.5")
    monkeypatch.setenv(FILES_ENV, "3")
    capture = capture_from_env()
    assert (capture.max_bytes, capture.max_files) == (2**19, 3)


@pytest.mark.parametrize("name,value", [(MAX_MB_ENV, "0"), (MAX_MB_ENV, "-1"), (MAX_MB_ENV, "lots"),
                                        (MAX_MB_ENV, "nan"), (MAX_MB_ENV, "inf"), (FILES_ENV, "0"),
                                        (FILES_ENV, "2.5"), (FILES_ENV, "-3"), (FILES_ENV, "many")])
def test_a_bad_bound_is_one_error_naming_the_variable(name, value, tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as e:
        capture_from_env()
    message = str(e.value)
    assert name in message and repr(value) in message and "\n" not in message
    assert [other for other in (MAX_MB_ENV, FILES_ENV) if other != name and other in message] == []


# ------------------------------------------------------------------------------------------ format and bounds
def test_a_line_carries_text_time_source_and_the_other_fields(tmp_path):
    capture = Capture(tmp_path / "c", 10_000, 2)
    assert capture.append([{"text": "Grüße aus Köln", "id": 7, "source": "theirs"}, {"text": ""}], "models:/m@a") == 2
    first, second = lines_of(tmp_path / "c")
    assert first["text"] == "Grüße aus Köln" and first["id"] == 7 and first["source"] == "models:/m@a"
    assert first["time"].endswith("+00:00") and second == {**second, "text": "", "source": "models:/m@a"}
    # what `nerflow predict` and `nerflow drift` read
    assert [d["text"] for d in read_captured_documents(tmp_path / "c")] == ["Grüße aus Köln", ""]


def test_rotation_keeps_at_most_files_files_each_within_the_bound(tmp_path, caplog):
    folder, max_bytes, max_files = tmp_path / "c", 2048, 3
    capture = Capture(folder, max_bytes, max_files)
    n = 0
    for batch in range(40):                                  # batches of 1..7 documents of varied length
        docs = [{"text": f"doc {n + i} " + "word " * ((n + i) % 23)} for i in range(batch % 7 + 1)]
        assert capture.append(docs, "test") == len(docs)
        n += len(docs)
        files = capture_files(folder)
        assert 1 <= len(files) <= max_files
        assert all(p.stat().st_size <= max_bytes for p in files)
    assert len(capture_files(folder)) == max_files
    kept = [int(d["text"].split()[1]) for d in read_captured_documents(folder)]
    assert kept == list(range(n - len(kept), n))             # the newest documents, in order, none lost between
    assert read_capture(folder) == capture_files(folder)
    with caplog.at_level(logging.WARNING, logger="nerflow.capture"):
        assert capture.append([{"text": "x" * max_bytes}, {"text": "small"}], "test") == 1
    assert "larger than a capture file" in caplog.text
    assert all(p.stat().st_size <= max_bytes for p in capture_files(folder))


def test_files_are_private_to_the_serving_account_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        capture = Capture(tmp_path / "deep" / "capture", 200, 5)
        capture.append([{"text": f"text number {i}"} for i in range(30)], "test")
    finally:
        os.umask(old)
    folder = tmp_path / "deep" / "capture"
    assert mode(folder) == 0o700
    assert len(capture_files(folder)) > 1
    assert {mode(p) for p in capture_files(folder)} == {0o600}
    assert mode(folder / LOCK_NAME) == 0o600


def _appender(folder: str, proc: int, docs: int, max_bytes: int, max_files: int) -> None:
    capture = Capture(folder, max_bytes, max_files)
    i = 0
    while i < docs:                                           # one document or a few per append
        batch = [{"text": f"p{proc} d{i + k} " + "abc " * ((i + k) % 17), "p": proc, "i": i + k}
                 for k in range(min(1 + i % 3, docs - i))]
        assert capture.append(batch, f"proc {proc}") == len(batch)
        i += len(batch)


def run_appenders(folder: Path, procs: int, docs: int, max_bytes: int, max_files: int) -> None:
    ctx = multiprocessing.get_context("spawn")                # no fork of a process that holds torch threads
    workers = [ctx.Process(target=_appender, args=(str(folder), p, docs, max_bytes, max_files))
               for p in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * procs


def test_concurrent_appends_from_several_processes_lose_and_tear_nothing(tmp_path):
    """4 processes x 200 documents, rotating every few KB: every line is whole JSON, every document is there once,
    each process's documents in its order, and no file past the bound. Deterministic: no timing is asserted."""
    folder, procs, docs, max_bytes = tmp_path / "c", 4, 200, 4096
    run_appenders(folder, procs, docs, max_bytes, max_files=10_000)
    files = capture_files(folder)
    assert len(files) > 5 and all(p.stat().st_size <= max_bytes for p in files)
    raw = [line for p in files for line in p.read_bytes().split(b"\n")[:-1]]
    assert all(p.read_bytes().endswith(b"\n") for p in files)
    records = [json.loads(line) for line in raw]              # a torn or interleaved line fails here
    assert len(records) == procs * docs
    for proc in range(procs):
        assert [r["i"] for r in records if r["p"] == proc] == list(range(docs))
    assert {r["source"] for r in records} == {f"proc {p}" for p in range(procs)}


def test_concurrent_rotation_keeps_the_file_bound(tmp_path):
    folder = tmp_path / "c"
    run_appenders(folder, 3, 100, 1024, max_files=4)
    files = capture_files(folder)
    assert len(files) == 4 and all(p.stat().st_size <= 1024 for p in files)
    assert all(isinstance(d["text"], str) for d in read_captured_documents(folder))


# ---------------------------------------------------------------------------------------------------- reading
def test_reading_names_the_bad_line_and_leaves_a_line_still_being_written(tmp_path):
    folder = tmp_path / "c"
    Capture(folder, 10_000, 3).append([{"text": "one"}, {"text": "two"}], "test")
    (path,) = capture_files(folder)
    with path.open("ab") as f:
        f.write(b'{"text": "half wri')                      # a writer in the middle of its write
    assert [d["text"] for d in read_captured_documents(folder)] == ["one", "two"]
    with path.open("ab") as f:
        f.write(b'\n{"text": "three"}\n')
    with pytest.raises(DataError, match=rf"{path.name}:3: not JSON"):
        read_captured_documents(folder)
    (folder / "notes.txt").write_text("not a capture file")
    assert read_capture(folder) == [path]
    with pytest.raises(DataError, match="capture folder not found"):
        read_captured_documents(tmp_path / "missing")
    assert read_captured_documents(tmp_path) == []           # a folder with nothing captured yet


def test_a_failed_write_warns_once_and_captures_nothing(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the capture folder should be")
    capture = Capture(blocker, 1000, 2)
    with caplog.at_level(logging.WARNING, logger="nerflow.capture"):
        assert capture.append([{"text": "a"}], "test") == 0
        assert capture.append([{"text": "b"}], "test") == 0
    assert len([r for r in caplog.records if r.name == "nerflow.capture"]) == 1
    assert "capture to" in caplog.text and str(blocker) in caplog.text
    assert blocker.read_text() == "a file where the capture folder should be"


# --------------------------------------------------------------------------------------- the served models
@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    import torch

    from tests.conftest import TINY_TEXTS
    from tests.unit.test_explain import classifier_folder, ner_folder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield {"ner": ner_folder(tmp_path_factory.mktemp("ner"), TINY_TEXTS * 4),
               "textcat": classifier_folder(tmp_path_factory.mktemp("textcat"), TINY_TEXTS * 4, ["neg", "pos"])}
    finally:
        torch.set_num_threads(threads)


def served(task: str, folder: Path):
    """The pyfunc model as `mlflow models serve` runs it: unpickled, load_context, then predict."""
    from nerflow.models import SERVED_ARTIFACT
    from nerflow.ner.serving import NerModel
    from nerflow.textcat.serving import TextClassifierModel

    model = {"ner": NerModel, "textcat": TextClassifierModel}[task]()
    model.load_context(SimpleNamespace(artifacts={SERVED_ARTIFACT: str(folder)}, model_config={}))
    return model


TEXTS = ["Maria Lopez works for Northwind Trading in New Salem .", "Nobody said anything about it ."]


@pytest.mark.parametrize("task", ["ner", "textcat"])
def test_a_served_model_captures_its_inputs_only_when_opted_in(task, model_dirs, tmp_path, monkeypatch):
    import pandas as pd

    folder = tmp_path / "capture"
    plain = served(task, model_dirs[task]).predict(None, TEXTS)     # not opted in
    assert not folder.exists() and len(plain) == 2
    monkeypatch.setenv(DIR_ENV, str(folder))
    model = served(task, model_dirs[task])
    assert model.predict(None, TEXTS) == plain
    assert model.predict(None, pd.DataFrame({"text": TEXTS[:1]})) == plain[:1]
    captured = read_captured_documents(folder)
    assert [d["text"] for d in captured] == [*TEXTS, TEXTS[0]] and {d["source"] for d in captured} == {"serve"}


@pytest.mark.parametrize("task", ["ner", "textcat"])
def test_a_capture_that_cannot_be_written_does_not_fail_the_prediction(task, model_dirs, tmp_path, monkeypatch,
                                                                        caplog):
    blocker = tmp_path / "capture"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv(DIR_ENV, str(blocker))
    model = served(task, model_dirs[task])
    with caplog.at_level(logging.WARNING, logger="nerflow.capture"):
        answers = model.predict(None, TEXTS)
    assert len(answers) == 2 and "capture to" in caplog.text


def test_predict_flow_captures_the_documents_with_the_model_uri(model_dirs, tmp_path, monkeypatch):
    from nerflow.flows.predict_flow import predict_task

    docs = tmp_path / "in.jsonl"
    docs.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    uri = str(model_dirs["ner"])
    predict_task.fn(uri, str(docs), str(tmp_path / "out.jsonl"), 8)
    assert not (tmp_path / "capture").exists()
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "capture"))
    stats = predict_task.fn(uri, str(docs), str(tmp_path / "out.jsonl"), 8)
    assert stats["documents"] == 2
    captured = read_captured_documents(tmp_path / "capture")
    assert [(d["text"], d["id"], d["source"]) for d in captured] == [(t, i, uri) for i, t in enumerate(TEXTS)]
