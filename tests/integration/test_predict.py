"""`nerflow predict` on the session's `tiny-ner` version 1: every MODEL_URI form, TEXT and files (plain text and JSON
lines with passthrough fields), a document longer than `tokenize.max_length` whose entity lies past the first window,
the bad-input cases (one `error:` line, exit 2, registry unchanged) and `--flow` tracked in MLflow.

Most checks call `cli.main` in-process (capsys); real processes only where stderr must be exactly one line."""
from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from nerflow import cache
from nerflow.flows import cli
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_REFUSED
from nerflow.flows.predict_flow import ARTIFACT_DIR, EXPERIMENT
from nerflow.ner.tokenization import Encoder

from .corpus import LONG
from .processes import nerflow_env, run
from .test_bad_input import one_error, registry_before  # noqa: F401 - a fixture: the registry stays as it was

MODEL, ALIAS = "tiny-ner", "challenger"
# LONG as raw text: 23 words, two windows at max_length=16; "New Salem" lies only in the second window and
# "Northwind Trading" straddles the first window's edge
LONG_TEXT = ("Yesterday in the morning Maria Lopez said that the board of the company Northwind Trading would meet "
             "in New Salem on Monday.")
LONG_SPANS = [("PER", "Maria Lopez"), ("ORG", "Northwind Trading"), ("LOC", "New Salem")]
SHORT_TEXT = "John Smith visited Berlin ."


def expected(text: str, spans: list[tuple[str, str]]) -> list[tuple[str, int, int, str]]:
    return [(t, text.index(e), text.index(e) + len(e), e) for t, e in spans]


def spans_of(record: dict) -> list[tuple[str, int, int, str]]:
    assert all(record["text"][e["start"]:e["end"]] == e["text"] and 0 < e["score"] <= 1 for e in record["entities"])
    return [(e["type"], e["start"], e["end"], e["text"]) for e in record["entities"]]


def predict(capsys, *args: str) -> tuple[list[dict], str]:
    capsys.readouterr()
    assert cli.main(["predict", *args]) == 0
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines()], err


@pytest.fixture(scope="module")
def version(pipeline_result):
    _, result = pipeline_result
    assert result["register"].model_name == MODEL
    return MlflowClient().get_model_version(MODEL, str(result["register"].version))


@pytest.fixture(scope="module")
def model_uris(pipeline_result, version, tmp_path_factory) -> dict[str, str]:
    """The five forms of MODEL_URI, all naming the session's version."""
    cfg, result = pipeline_result
    mlflow_folder = mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version.version}",
                                                        dst_path=str(tmp_path_factory.mktemp("mlflow-model")))
    train_key = MlflowClient().get_run(result.run_id).data.tags["stage.train.key"]
    hf_folder = cache.lookup(Path(cfg.cache_dir), "train", train_key) / "model"
    assert ALIAS in version.aliases
    return {"alias": f"models:/{MODEL}@{ALIAS}", "version": f"models:/{MODEL}/{version.version}",
            "run": f"runs:/{version.run_id}/model", "mlflow folder": mlflow_folder, "hf folder": str(hf_folder)}


def test_the_long_document_needs_windows_and_the_entity_straddles_the_first_edge(corpus_tokenizer):
    words = [w for w, _ in LONG]
    assert " ".join(words).replace(" .", ".") == LONG_TEXT
    windows = Encoder(corpus_tokenizer, 16, 4).encode(0, words, None)
    assert len(windows) == 2 and (windows[0].word_start, windows[0].word_end) == (0, 14)
    assert words[13:15] == ["Northwind", "Trading"] and words.index("New") >= windows[0].word_end


@pytest.mark.parametrize("form", ["alias", "version", "run", "mlflow folder", "hf folder"])
def test_every_model_uri_form_gives_exact_spans_on_a_windowed_document(capsys, model_uris, form):
    # a run's model is no registered version: no stored hash vouches for its files, so it needs --trust
    records, err = predict(capsys, model_uris[form], LONG_TEXT, SHORT_TEXT, *(["--trust"] if form == "run" else []))
    assert [r["text"] for r in records] == [LONG_TEXT, SHORT_TEXT]
    assert spans_of(records[0]) == expected(LONG_TEXT, LONG_SPANS)
    assert spans_of(records[1]) == expected(SHORT_TEXT, [("PER", "John Smith"), ("LOC", "Berlin")])
    assert re.fullmatch(r"2 documents, 5 entities in [\d.]+ s \([\d.]+ documents/s\)", err.splitlines()[-1]), err


def test_a_model_no_hash_vouches_for_or_with_pickled_weights_needs_trust(capsys, model_uris, version, tmp_path):
    import shutil

    logged = version.source   # models:/m-<id>: the version's logged model by id, which no version vouches for
    assert re.fullmatch(r"models:/m-\w+", logged), logged
    for uri in (model_uris["run"], logged):
        assert cli.main(["predict", uri, SHORT_TEXT]) == EXIT_REFUSED
        assert re.match(rf"^error: {re.escape(uri)} has no stored model hash .* give --trust", capsys.readouterr().err)
    records, _ = predict(capsys, logged, SHORT_TEXT, "--trust")
    assert spans_of(records[0]) == expected(SHORT_TEXT, [("PER", "John Smith"), ("LOC", "Berlin")])
    folder = tmp_path / "model"
    shutil.copytree(model_uris["hf folder"], folder)
    (folder / "training_args.bin").write_bytes(b"a pickle torch.load would run")
    assert cli.main(["predict", str(folder), SHORT_TEXT]) == EXIT_REFUSED
    assert re.match(rf"^error: {re.escape(str(folder))} carries pickled weights \(training_args.bin\)",
                    capsys.readouterr().err)
    records, _ = predict(capsys, str(folder), SHORT_TEXT, "--trust")
    assert spans_of(records[0]) == expected(SHORT_TEXT, [("PER", "John Smith"), ("LOC", "Berlin")])


def test_json_lines_pass_other_fields_through_to_the_output_file(capsys, model_uris, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"id": "a", "text": LONG_TEXT, "meta": {"lang": "en"}}) + "\n\n"
                   + json.dumps({"id": "b", "text": ""}) + "\n" + json.dumps({"text": SHORT_TEXT, "n": 3}) + "\n")
    out = tmp_path / "out" / "spans.jsonl"
    records, _ = predict(capsys, model_uris["alias"], "--input", str(src), "--output", str(out), "--json",
                         "--batch-size", "2")
    (stats,) = records                         # --json with --output: the summary on stdout, the spans in the file
    assert stats["documents"] == 3 and stats["entities"] == 5 and stats["documents_per_s"] > 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r.get("id"), r.get("meta"), r.get("n")) for r in written] == [("a", {"lang": "en"}, None),
                                                                           ("b", None, None), (None, None, 3)]
    assert list(written[0]) == ["id", "meta", "text", "entities"]
    assert spans_of(written[0]) == expected(LONG_TEXT, LONG_SPANS) and written[1]["entities"] == []
    assert [p.name for p in out.parent.iterdir()] == ["spans.jsonl"]          # no temporary file left


def test_plain_text_from_stdin_in_a_real_process(tmp_path, model_uris, mlflow_store):
    """One document per line, an empty line an empty document; stderr is the summary line and nothing else."""
    import subprocess

    from .processes import NERFLOW

    proc = subprocess.run([*NERFLOW, "predict", model_uris["version"], "--input", "-"], cwd=tmp_path,
                          env=nerflow_env(mlflow_store), input=f"{SHORT_TEXT}\n\n{LONG_TEXT}\n", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in records] == [SHORT_TEXT, "", LONG_TEXT] and records[1]["entities"] == []
    assert spans_of(records[2]) == expected(LONG_TEXT, LONG_SPANS)
    assert re.fullmatch(r"3 documents, 5 entities in [\d.]+ s \([\d.]+ documents/s\)", proc.stderr.strip()), \
        proc.stderr[-3000:]


@pytest.mark.parametrize("case", ["not-utf8", "not-json", "no-text", "nothing", "unknown-alias", "not-a-model"])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, mlflow_store, registry_before, case):  # noqa: F811
    f = tmp_path / "docs.jsonl"
    args, pattern = ["--input", str(f)], ""
    if case == "not-utf8":
        f = tmp_path / "docs.txt"
        f.write_bytes(b"John Smith visited Berlin .\nJos\xe9 said hi\n")
        args, pattern = ["--input", str(f)], rf"^error: {re.escape(str(f))}:2: not UTF-8"
    elif case == "not-json":
        f.write_text('{"text": "fine"}\n{"text": "broken"\n')
        pattern = rf"^error: {re.escape(str(f))}:2: not JSON"
    elif case == "no-text":
        f.write_text('{"text": "fine"}\n\n{"body": "no text here"}\n')
        pattern = rf'^error: {re.escape(str(f))}:3: no "text" field'
    elif case == "nothing":
        args, pattern = [], r"^error: nothing to predict: give TEXT arguments, or --input"
    elif case == "unknown-alias":
        args, pattern = [SHORT_TEXT], rf"models:/{MODEL}@nope: .*alias"
    else:
        args, pattern = [SHORT_TEXT], rf"^error: {re.escape(str(tmp_path))}: neither an MLflow model folder"
    uri = str(tmp_path) if case == "not-a-model" else f"models:/{MODEL}@{'nope' if case == 'unknown-alias' else ALIAS}"
    out = tmp_path / "out.jsonl"
    one_error(run(["predict", uri, *args, "--output", str(out)], tmp_path, nerflow_env(mlflow_store)),
              EXIT_BAD_INPUT, pattern)
    assert not out.exists()


def test_flow_records_counts_throughput_and_the_output_as_an_artifact(capsys, model_uris, tmp_path):
    src = tmp_path / "docs.txt"
    src.write_text(f"{LONG_TEXT}\n{SHORT_TEXT}\n\n")
    out = tmp_path / "flow-out.jsonl"
    (stats,), err = predict(capsys, model_uris["version"], "--input", str(src), "--output", str(out), "--flow",
                            "--json")
    assert stats["documents"] == 3 and stats["entities"] == 5
    client = MlflowClient()
    run_ = client.get_run(stats["run_id"])
    assert client.get_experiment(run_.info.experiment_id).name == EXPERIMENT
    assert run_.info.status == "FINISHED" and run_.data.tags["nerflow.prefect_flow_run"] == stats["flow_run_id"]
    assert run_.data.params["model_uri"] == model_uris["version"] and run_.data.params["input"] == str(src.resolve())
    metrics = run_.data.metrics
    assert metrics["predict/documents"] == 3 and metrics["predict/entities"] == 5
    assert metrics["predict/documents_per_s"] > 0
    logged = mlflow.artifacts.download_artifacts(run_id=run_.info.run_id, artifact_path=f"{ARTIFACT_DIR}/{out.name}",
                                                 dst_path=str(tmp_path / "dl"))
    assert Path(logged).read_text() == out.read_text()
    assert spans_of(json.loads(out.read_text().splitlines()[0])) == expected(LONG_TEXT, LONG_SPANS)
