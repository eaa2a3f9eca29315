"""Every error a user can cause, through a real `nerflow` process: exactly one `error:` line on stderr naming the
file:line or the config key (plus at most a `hint:` line), no other WARNING or ERROR line, no traceback, the exit
code of the table (flows/errors.py), and the registry as it was. A real bug still prints its traceback."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_UNAVAILABLE
from nerflow.flows.prefect_server import free_port

from .corpus import LONG, SHORT, write_conll
from .processes import nerflow_env, one_error, run

MODEL = "tiny-ner"          # registered once by the session's pipeline_result; bad runs must leave it as it is
# An unreachable tracking server: MLflow's HTTP retries are bounded (flows/errors.py MLFLOW_HTTP_BOUNDS) so the
# command gives up in ~10 s instead of ~2 minutes.
UNREACHABLE_BOUND_S = 30


@pytest.fixture
def corpus(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        write_conll(d / name, [SHORT[0], SHORT[1], LONG])
    return d


@pytest.fixture
def registry_before(pipeline_result) -> dict:
    """Versions and the alias of a model that exists: every bad command below leaves them exactly so."""
    client = MlflowClient()
    state = {"versions": sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'")),
             "challenger": client.get_model_version_by_alias(MODEL, "challenger").version}
    assert state["versions"], "the session's pipeline run registered nothing"
    yield state
    after = {"versions": sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'")),
             "challenger": client.get_model_version_by_alias(MODEL, "challenger").version}
    assert after == state


def write_cfg(tmp_path: Path, corpus: Path, cache_dir: Path, extra: str = "") -> Path:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"experiment: nerflow-bad-input\ncache_dir: {cache_dir}\nregistry:\n  model_name: {MODEL}\n"
                   f"data:\n  dir: {corpus}\n  train: train.txt\n  validation: valid.txt\n  test: test.txt\n{extra}")
    return cfg


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
def test_bad_data_file_stops_the_run_with_file_and_line(case, where, corpus, tmp_path, cache_dir, mlflow_store,
                                                        registry_before):
    break_file(corpus / "train.txt", case)
    result = run(["run", str(write_cfg(tmp_path, corpus, cache_dir))], tmp_path, nerflow_env(mlflow_store))
    one_error(result, EXIT_BAD_INPUT, where)


def test_missing_file_and_jsonl_mismatch(corpus, tmp_path, cache_dir, mlflow_store, registry_before):
    (corpus / "valid.txt").unlink()
    env = nerflow_env(mlflow_store)
    one_error(run(["run", str(write_cfg(tmp_path, corpus, cache_dir))], tmp_path, env), EXIT_BAD_INPUT,
              r"valid\.txt: file not found")
    lines = ['{"tokens": ["John", "Smith"], "tags": ["B-PER", "I-PER"]}',
             '{"tokens": ["Anna", "visited", "Paris"], "tags": ["B-PER", "O"]}']
    for name in ("train.jsonl", "valid.jsonl", "test.jsonl"):
        (corpus / name).write_text("\n".join(lines) + "\n")
    result = run(["run", str(write_cfg(tmp_path, corpus, cache_dir)), "data.format=jsonl", "data.train=train.jsonl",
                  "data.validation=valid.jsonl", "data.test=test.jsonl"], tmp_path, env)
    one_error(result, EXIT_BAD_INPUT, r"train\.jsonl:2: .*tokens_tags_aligned")


def test_config_errors_name_where_the_key_came_from_and_suggest_one(corpus, tmp_path, cache_dir, mlflow_store):
    env = nerflow_env(mlflow_store)
    cfg = write_cfg(tmp_path, corpus, cache_dir)
    one_error(run(["run", str(cfg), "train.epocs=1"], tmp_path, env), EXIT_BAD_INPUT,
              r"^error: override train\.epocs=1: config key 'train\.epocs' does not exist "
              r"\(did you mean 'train\.epochs'\?\)$")
    one_error(run(["validate", str(cfg), "data.scheme=iob3"], tmp_path, env), EXIT_BAD_INPUT,
              r"override data\.scheme=iob3: config key 'data\.scheme': .*'iob2', 'iob1' or 'bioes'")
    typo = write_cfg(tmp_path, corpus, cache_dir, "train:\n  epochs: 1\n  bach_size: 4\n")   # line 12
    one_error(run(["run", str(typo)], tmp_path, env), EXIT_BAD_INPUT,
              rf"^error: {re.escape(str(typo))}:12: config key 'train\.bach_size' does not exist "
              r"\(did you mean 'train\.batch_size'\?\)$")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"experiment: caf\xe9\n")
    one_error(run(["run", str(latin1)], tmp_path, env), EXIT_BAD_INPUT, rf"{re.escape(str(latin1))}:1: not UTF-8")


def test_hf_dataset_without_the_tag_column(tmp_path, cache_dir, mlflow_store):
    ds = tmp_path / "hf"
    ds.mkdir()
    for split in ("train", "validation", "test"):
        (ds / f"{split}.jsonl").write_text('{"tokens": ["Anna", "said"], "labels": ["B-PER", "O"]}\n')
    cfg = tmp_path / "hf.yaml"
    cfg.write_text(f"cache_dir: {cache_dir}\ndata:\n  format: hf\n  hf_dataset: {ds}\n")
    one_error(run(["validate", str(cfg)], tmp_path, nerflow_env(mlflow_store)), EXIT_BAD_INPUT,
              r"\[train\]: no column 'ner_tags'")


def test_unknown_model_version_alias_or_run(tmp_path, mlflow_store, registry_before):
    env = nerflow_env(mlflow_store)
    for uri, pattern in [("models:/nope@challenger", r"models:/nope@challenger: .*nope"),
                         (f"models:/{MODEL}@nope", rf"models:/{MODEL}@nope: .*alias"),
                         (f"models:/{MODEL}/99", rf"models:/{MODEL}/99: .*99")]:
        one_error(run(["predict", uri, "John Smith visited Berlin ."], tmp_path, env), EXIT_BAD_INPUT, pattern)
    one_error(run(["rerun", "0123456789abcdef0123456789abcdef"], tmp_path, env), EXIT_BAD_INPUT,
              r"no pipeline run with MLflow run id or Prefect flow-run id '0123456789abcdef")


def test_unreachable_tracking_server_fails_fast_with_exit_3(corpus, tmp_path, cache_dir, mlflow_store):
    uri = f"http://127.0.0.1:{free_port()}"
    env = nerflow_env(mlflow_store, MLFLOW_TRACKING_URI=uri)
    for args in (["runs"], ["run", str(write_cfg(tmp_path, corpus, cache_dir))]):
        started = time.monotonic()
        result = run(args, tmp_path, env)
        assert time.monotonic() - started < UNREACHABLE_BOUND_S
        one_error(result, EXIT_UNAVAILABLE, rf"^error: cannot reach the MLflow tracking server at {re.escape(uri)}")


def test_a_real_bug_still_prints_its_traceback(corpus, tmp_path, cache_dir, mlflow_store):
    """A bug injected into the planner (not a user error): the traceback is printed and the exit code is 1."""
    import subprocess

    code = ("import nerflow.plan as plan\n"
            "def broken(*a, **k):\n    return {}['no such key']\n"
            "plan.make_plan = broken\n"
            "from nerflow.flows.cli import main\n"
            f"raise SystemExit(main(['run', {str(write_cfg(tmp_path, corpus, cache_dir))!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=nerflow_env(mlflow_store),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_BUG, result.stderr[-3000:]
    assert "Traceback (most recent call last)" in result.stderr and "KeyError: 'no such key'" in result.stderr
    assert "bug in nerflow" in result.stderr


def test_validate_command_checks_data_only(corpus, tmp_path, cache_dir, mlflow_store):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  dir: {corpus}\n  train: train.txt\n  validation: valid.txt\n  test: test.txt\n")
    env = nerflow_env(mlflow_store)
    ok = run(["validate", str(cfg)], tmp_path, env)
    assert ok.returncode == 0 and "data OK" in ok.stdout, ok.stderr[-2000:]
    break_file(corpus / "test.txt", "unknown-tag")
    failed = run(["validate", str(cfg)], tmp_path, env)
    one_error(failed, EXIT_BAD_INPUT, r"^error: data validation failed: 1 problem\(s\) \(tags_well_formed: 1\)")
    assert f"{corpus / 'test.txt'}:6: [tags_well_formed]" in failed.stdout   # the problem itself: listed
