"""`nerflow curve`: seeded subsets of train through the real flow (Prefect test server, MLflow sqlite), one child
run per point, the table and the plot on the parent run; a fraction that loses a class is one error, exit 2."""
from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import pytest

from .corpus import tiny_config
from .textcat_corpus import textcat_config


def test_a_text_curve_with_the_baseline_writes_the_table_and_the_plot(tmp_path, monkeypatch, textcat_reviews,
                                                                     textcat_model_dir, mlflow_store):
    from nerflow.flows.curve_flow import curve

    monkeypatch.chdir(tmp_path)
    textcat_config(tmp_path, textcat_reviews, textcat_model_dir, tmp_path / "cache")
    overrides = ["data.format=folders", f"data.dir={textcat_reviews}", "data.train=.", "data.split.validation=0.2",
                 "data.split.test=0.2", f"model.name_or_path={textcat_model_dir}", f"cache_dir={tmp_path / 'cache'}",
                 "registry.model_name=tiny-curve", "tokenize.max_length=16", "tokenize.stride=4",
                 "train.epochs=3", "train.lr=0.003", "train.freeze=none", "train.checkpoint_every=0",
                 "export.enabled=false", "monitor.reference=false"]
    config = str(tmp_path / "textcat.yaml")
    result = curve(config, overrides, [1.0, 0.25], seeds=2, baseline=True)

    rows = sorted(result.rows, key=lambda r: (r["fraction"], r["seed"]))
    assert [(r["fraction"], r["seed"]) for r in rows] == [(0.25, 42), (0.25, 43), (1.0, 42), (1.0, 43)]
    full = rows[2]["examples"]
    assert rows[0]["examples"] == rows[1]["examples"] < full and rows[0]["examples"] == pytest.approx(full / 4, abs=2)
    assert all(0.0 <= r["test_f1"] <= 1.0 and 0.0 <= r["baseline_test_f1"] <= 1.0 for r in rows)
    table = list(csv.DictReader((Path(result.folder) / "curve.csv").open()))
    assert len(table) == 4 and {"examples", "test_f1", "baseline_test_f1", "train_seconds"} <= set(table[0])
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(result.parent_run_id, "curve")} == {"curve/curve.csv",
                                                                                     "curve/curve.png"}
    assert (Path(result.folder) / "curve.png").read_bytes()[:4] == b"\x89PNG"
    # each point's child run says which C the baseline chose on validation, and what it scored there
    from nerflow.textcat.baseline import C_GRID

    for r in rows:
        logged = client.get_run(r["mlflow_run"]).data.metrics
        assert logged["baseline/C"] in C_GRID and 0.0 <= logged["baseline/val_f1"] <= 1.0
        assert logged["baseline/test_f1"] == pytest.approx(r["baseline_test_f1"])
    # the two seeds of a fraction train on different subsets
    from nerflow.flows.curve_flow import point_config
    from nerflow.plan import make_plan

    keys = {make_plan(point_config(config, overrides, 0.25, s)).stages["validate"].key for s in (42, 43)}
    assert len(keys) == 2

    exp = client.get_run(result.parent_run_id).info.experiment_id
    before = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    again = curve(config, overrides, [0.25, 1.0], seeds=2, baseline=True)   # the same points: all done
    assert again.parent_run_id == result.parent_run_id and len(again.rows) == 4
    assert len(client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")) == len(before)


@pytest.mark.parametrize("args, message", [
    (["--fractions", "0.05"], "data.train_fraction=0.05: the sample (data.sample_seed=42) keeps 1 of 24 "
                              "sentences and no example of"),
    (["--fractions", "0.5,1.5"], "--fractions: each must be in (0, 1], got 1.5"),
    (["--fractions", "0,0.5"], "--fractions: each must be in (0, 1], got 0"),
    (["--fractions", "a"], "--fractions: comma-separated numbers"),
    (["--seeds", "0"], "--seeds: at least 1"),
    (["--baseline"], "--baseline: the TF-IDF baseline is for texts, not token-classification"),
])
def test_bad_curve_input_is_one_error_and_exit_2(tmp_path, monkeypatch, capsys, tiny_corpus, corpus_model_dir, args,
                                                 message):
    from nerflow.flows.cli import main

    monkeypatch.chdir(tmp_path)
    tiny_config(tmp_path, tiny_corpus, corpus_model_dir, tmp_path / "cache")
    overrides = [f"data.dir={tiny_corpus}", "data.train=train.txt", "data.validation=valid.txt",
                 "data.test=test.txt", f"model.name_or_path={corpus_model_dir}", f"cache_dir={tmp_path / 'cache'}"]
    assert main(["curve", str(tmp_path / "tiny.yaml"), *overrides, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "tune").exists()   # nothing started
