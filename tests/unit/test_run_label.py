"""Run names and sources as the MLflow UI shows them (nerflow.run_label): what differs between runs, at a glance."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from nerflow import run_label

STARTED = datetime(2026, 12, 3, 20, 41, 7, tzinfo=UTC)


def test_a_run_name_says_model_data_seed_and_start():
    name = run_label.run_name("sentence-transformers/all-MiniLM-L6-v2", "conll2003", 42, STARTED)
    assert name == "all-MiniLM-L6-v2 · conll2003 · seed 42 · 12-03 20:41"


def test_runs_that_differ_in_seed_model_or_time_get_different_names():
    names = {run_label.run_name("all-MiniLM-L6-v2", "conll2003", 42, STARTED),
             run_label.run_name("all-MiniLM-L6-v2", "conll2003", 7, STARTED),
             run_label.run_name("bert-base-cased", "conll2003", 42, STARTED),
             run_label.run_name("all-MiniLM-L6-v2", "conll2003", 42, STARTED + timedelta(minutes=1))}
    assert len(names) == 4


def test_a_scheduled_run_names_its_schedule_and_the_time_is_utc():
    cet = timezone(timedelta(hours=1))
    name = run_label.run_name("/models/tiny-bert/", "quickstart", 42, datetime(2026, 12, 3, 21, 41, tzinfo=cet),
                              schedule="nightly")
    assert name == "tiny-bert · quickstart · schedule nightly · 12-03 20:41"


def test_the_data_name_is_the_dataset_the_telling_train_file_or_the_folder():
    assert run_label.data_name("conll2003", "/x", "train.txt") == "conll2003"
    assert run_label.data_name("/data/hf/wnut_17/", "/x", "train.txt") == "wnut_17"
    assert run_label.data_name(None, "/work/shared/data/conll2003", "train.txt") == "conll2003"
    assert run_label.data_name(None, "/work/shared/data/movie_reviews", ".") == "movie_reviews"
    assert run_label.data_name(None, "/data", "wnut17_train.conll") == "wnut17_train"


def test_a_local_source_has_no_slash_so_the_ui_shows_all_of_it():
    """MLflow's UI shows a LOCAL source only from its last `/` on: `configs/quickstart.yaml` would read as
    `quickstart.yaml`, and the command would be lost."""
    argv = ["/work/.venv/bin/nerflow", "run", "configs/quickstart.yaml", "train.epochs=1", "data.dir=data/q"]
    source = run_label.source_name(argv)
    assert source == "nerflow run quickstart.yaml train.epochs=1 data.dir=q"
    assert "/" not in source
    assert run_label.source_name(["/src/flows/cli.py", "run", "c.yaml"]) == "nerflow run c.yaml"


def test_a_scheduled_source_names_the_schedule_not_prefects_engine():
    argv = ["/venv/lib/python3.11/site-packages/prefect/engine.py"]
    assert run_label.source_name(argv, schedule="nightly") == "nerflow schedule nightly"
    assert run_label.source_name(argv) == "engine.py"   # what MLflow showed before: the reason for the above
