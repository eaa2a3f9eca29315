"""`nerflow tune`: an Optuna study as a Prefect flow on the real test server, trials as MLflow child runs of the
study's run, the study in a sqlite storage of its own; the pruner; bad spaces."""
from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
import yaml

from nerflow import faults
from nerflow.config import ConfigError

from .corpus import tiny_config

EPOCHS = 6


def tune_files(tmp_path: Path, corpus: Path, model_dir: Path, cache_dir: Path, model_name: str,
               space: dict) -> tuple[Path, list[str], Path]:
    """A config file (the tiny NER corpus, a few epochs) with its overrides, and a space file."""
    cfg = tiny_config(tmp_path, corpus, model_dir, cache_dir, f"registry.model_name={model_name}")
    overrides = [f"data.dir={corpus}", "data.train=train.txt", "data.validation=valid.txt", "data.test=test.txt",
                 f"model.name_or_path={model_dir}", f"cache_dir={cache_dir}", f"registry.model_name={model_name}",
                 "tokenize.max_length=16", "tokenize.stride=4", f"train.epochs={EPOCHS}", "train.lr=0.003",
                 "train.batch_size=4", "train.freeze=none", "train.early_stopping_patience=0",
                 "train.checkpoint_every=0", "export.enabled=false", "monitor.reference=false"]
    assert cfg.registry.model_name == model_name
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    return tmp_path / "tiny.yaml", overrides, space_file


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # ./tune/optuna.db and the study folders land here
    return tmp_path


def children(parent_run_id: str) -> list:
    client = mlflow.MlflowClient()
    exp = client.get_run(parent_run_id).info.experiment_id
    return client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=100)


def test_a_three_trial_study_completes_with_child_runs_plots_and_the_best_config(
        in_tmp, tiny_corpus, corpus_model_dir, cache_dir, mlflow_store):
    from nerflow.flows.tune_flow import tune

    config, overrides, space = tune_files(in_tmp, tiny_corpus, corpus_model_dir, cache_dir, "tune-three", {
        "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}, "train.warmup_ratio": {"choices": [0.0, 0.1]}})
    # no pruning before 3 complete trials: every trial runs whole (the pruner's own test plants a bad rate)
    result = tune(str(config), overrides, trials=3, space=str(space), pruner_startup_trials=3)

    assert result.finished == 3 and result.counts == {"complete": 3}
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{in_tmp / 'tune' / 'optuna.db'}")
    assert len(study.trials) == 3
    runs = children(result.parent_run_id)
    labels = sorted(r.data.tags["nerflow.trial"] for r in runs)
    assert labels == ["0", "1", "2", "defaults"]   # one child run per trial, and the baseline
    assert all(r.info.status == "FINISHED" for r in runs)
    # each trial ran with its own values: its params are its config
    by_label = {r.data.tags["nerflow.trial"]: r for r in runs}
    for t in study.trials:
        assert float(by_label[str(t.number)].data.params["train.lr"]) == pytest.approx(t.params["train.lr"])
    # the parent: the study's record, the plots, the best config
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(result.parent_run_id, "study")}
    assert {"study/optimization_history.png", "study/trials.csv", "study/summary.json"} <= files
    best_yaml = Path(result.folder) / "best.yaml"
    best = yaml.safe_load(best_yaml.read_text())
    assert best["train"]["lr"] == pytest.approx(result.best["params"]["train.lr"])
    assert result.best["val_f1"] == pytest.approx(max(t.value for t in study.trials))
    # the best config is a config `nerflow run` reads, and its training is the best trial's (same keys)
    from nerflow.config import load_config
    from nerflow.plan import make_plan

    plan = make_plan(load_config(best_yaml))
    assert plan.stages["train"].complete and plan.stages["evaluate"].complete

    # the same command again, with --register-best: no trial repeated, the pipeline registers the best config
    # (its training reused: the same keys)
    from nerflow.flows.cli import main

    assert main(["tune", str(config), *overrides, "--trials", "3", "--space", str(space), "--pruner-startup-trials",
                 "3", "--register-best"]) == 0
    assert len(optuna.load_study(study_name=result.study, storage=study._storage).trials) == 3
    assert len(children(result.parent_run_id)) == 4
    client = mlflow.MlflowClient()
    (version,) = client.search_model_versions("name='tune-three'")
    registered = client.get_run(version.run_id)
    assert float(registered.data.params["train.lr"]) == pytest.approx(result.best["params"]["train.lr"])
    assert registered.data.tags["stage.train"] == "reused"


def test_the_pruner_stops_a_trial_with_a_bad_learning_rate(in_tmp, monkeypatch, tiny_corpus, corpus_model_dir,
                                                          cache_dir, mlflow_store):
    from nerflow.flows.tune_flow import tune
    from nerflow.prefect_tasks.train import work_dir

    config, overrides, space = tune_files(in_tmp, tiny_corpus, corpus_model_dir, cache_dir, "tune-prune", {
        "train.lr": {"low": 1e-8, "high": 1e-2, "log": True}})
    storage = f"sqlite:///{in_tmp / 'planted.db'}"
    monkeypatch.setenv("NERFLOW_TUNE_STORAGE", storage)
    study = optuna.create_study(study_name="planted", storage=storage, direction="maximize")
    for lr in (0.003, 0.005, 1e-8):   # two good trials give the median; the third is hopeless
        study.enqueue_trial({"train.lr": lr})
    result = tune(str(config), overrides, trials=3, space=str(space), study="planted", pruner_startup_trials=2,
                  warmup_epochs=2)

    trials = optuna.load_study(study_name="planted", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    pruned = trials[2]
    assert max(pruned.intermediate_values) < EPOCHS   # stopped before its last epoch
    assert result.counts == {"complete": 2, "pruned": 1}
    run = next(r for r in children(result.parent_run_id) if r.data.tags["nerflow.trial"] == "2")
    assert run.info.status == "KILLED" and run.data.tags["nerflow.trial.state"] == "pruned"
    from nerflow.config import load_config
    from nerflow.plan import make_plan

    bad = load_config(config, [*overrides, "train.lr=1.0e-08"])
    plan = make_plan(bad)
    assert not plan.stages["train"].complete and not work_dir(plan, bad).exists()   # its work is discarded


@pytest.mark.parametrize("space, message", [
    ({}, "the search space is empty"),
    ({"train.lrr": {"low": 1e-5, "high": 1e-3}}, "space.yaml:1: config key 'train.lrr' does not exist"),
    ({"train.lr": {"low": 1e-3, "high": 1e-5}}, "space.yaml:1: train.lr: low (0.001) must be below high"),
    ({"train.lr": {"low": 0, "high": 1e-3, "log": True}}, "needs low > 0"),
    ({"train.log_every": {"low": 1, "high": 5}}, "does not change what a trial trains"),
    ({"registry.alias": {"choices": ["a", "b"]}}, "is not read by a trial's stages"),
    ({"train.freeze": {"choices": ["none", "all"]}}, "space.yaml:1: config key 'train.freeze'"),
])
def test_a_bad_space_is_one_error_naming_the_file_and_line(tmp_path, tiny_corpus, corpus_model_dir, cache_dir,
                                                           space, message):
    from nerflow import tuning
    from nerflow.config import load_config

    config, overrides, space_file = tune_files(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, "tune-bad",
                                               space)
    if not space:
        space_file.write_text("# nothing here\n")
    cfg = load_config(config, overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        tuning.check_space(tuning.load_space(space_file, cfg), config, overrides, cfg)


def interrupted_study(tmp_path: Path, corpus: Path, model_dir: Path, study: str):
    """(the `nerflow tune` arguments, the study's storage url, a predicate true (the trials) once trial 0 is complete
    and trial 1 is training) for a 3-trial study whose trials train long enough to be stopped mid-trial."""
    import contextlib
    import sqlite3

    cache = tmp_path / "cache"
    config, overrides, space = tune_files(tmp_path, corpus, model_dir, cache, f"tune-{study}", {
        "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}})
    overrides = [o if not o.startswith("train.epochs=") else "train.epochs=30" for o in overrides]
    args = ["tune", str(config), *overrides, "--trials", "3", "--space", str(space), "--study", study]
    db = tmp_path / "tune" / "optuna.db"
    storage = f"sqlite:///{db}"

    def training_trial_1():
        if not db.exists():
            return None
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            # read-only until the command has made the schema: opening a storage creates it, and two creators race
            ready = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'").fetchone()[0] \
                and conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
        if not ready:
            return None
        try:
            trials = optuna.load_study(study_name=study, storage=storage).trials
        except KeyError:   # the study is not created yet
            return None
        states = [t.state.name for t in trials]
        training = any((cache / "train").glob("*.work/checkpoints/*"))
        return trials if states[:2] == ["COMPLETE", "RUNNING"] and training else None

    return args, storage, training_trial_1


def at_fault_point(log: Path, verb: str, trials_then):
    """A predicate: the trials (`trials_then()`), once the command says it is held at `tune.epoch-reported`."""
    return lambda: f"{verb} at tune.epoch-reported" in log.read_text() and trials_then()


def test_ctrl_c_mid_trial_stops_the_study_and_the_same_command_continues_the_trial(tmp_path, tiny_corpus,
                                                                                   corpus_model_dir, mlflow_store):
    """SIGINT to the process group (a terminal's Ctrl-C) while trial 1 trains: exit 130 within the interrupt bound,
    the trial and its MLflow run marked interrupted (not RUNNING), the study's run KILLED, the trial's training
    folder kept, the command that continues printed; the same command reruns that trial with the same values, its
    training resumed from the kept checkpoint, and finishes the study without rerunning trial 0."""
    import os
    import re
    import signal

    from .processes import nerflow_env, run, start, wait_for
    from .test_interrupt import INTERRUPT_BOUND_S

    args, storage, training_trial_1 = interrupted_study(tmp_path, tiny_corpus, corpus_model_dir, "ctrl-c")
    env = nerflow_env(mlflow_store)
    # trial 1 waits after reporting its first epoch until the signal comes: a tiny trial trains in about a second,
    # too fast for a poll to be sure of catching it mid-way
    proc, log = start(args, tmp_path, {**env, faults.ENV: "tune.epoch-reported/1:pause"})
    before = wait_for(at_fault_point(log, "pausing", training_trial_1), 240, "trial 1 training", proc, log)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=INTERRUPT_BOUND_S) == 130, log.read_text()[-3000:]
    output = log.read_text()
    assert "run `nerflow tune " in output and "to continue" in output, output[-3000:]

    trials = optuna.load_study(study_name="ctrl-c", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"] and trials[1].user_attrs.get("interrupted")
    client = mlflow.MlflowClient()
    (parent,) = client.search_runs([client.get_experiment_by_name("nerflow-test").experiment_id],
                                   "tags.`nerflow.study` = 'ctrl-c'")
    assert parent.info.status == "KILLED"
    runs = {r.data.tags["nerflow.trial"]: r for r in children(parent.info.run_id)}
    assert (runs["1"].info.status, runs["1"].data.tags["nerflow.trial.state"]) == ("KILLED", "interrupted")
    assert list((tmp_path / "cache" / "train").glob("*.work/checkpoints/*"))   # kept: the retry continues from it

    done = run(args, tmp_path, env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"resuming from checkpoint step [1-9]", done.stdout + done.stderr), done.stderr[-3000:]
    trials = optuna.load_study(study_name="ctrl-c", storage=storage).trials
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states
    assert states.count("COMPLETE") + states.count("PRUNED") == 3
    assert trials[0].datetime_complete == before[0].datetime_complete   # finished before the Ctrl-C: not rerun
    again = [t for t in trials[2:] if t.params == trials[1].params]
    assert len(again) == 1 and again[0].state.name == "COMPLETE"    # the interrupted values, run once more
    labels = [r.data.tags["nerflow.trial"] for r in children(parent.info.run_id)]
    assert labels.count("0") == 1 and labels.count("defaults") == 1
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_a_study_killed_mid_trial_resumes_without_repeating_a_finished_trial(tmp_path, tiny_corpus,
                                                                            corpus_model_dir, mlflow_store):
    """kill -9 of the whole process group while a trial trains; the same command finishes the study: the finished
    trials are not run again, the killed one is failed and retried from its checkpoints, nothing is left RUNNING
    (neither the Optuna trial nor its MLflow run)."""
    import os
    import signal

    from .processes import nerflow_env, run, start, wait_for

    args, storage, training_trial_1 = interrupted_study(tmp_path, tiny_corpus, corpus_model_dir, "killed")
    env = nerflow_env(mlflow_store)

    proc, log = start(args, tmp_path, {**env, faults.ENV: "tune.epoch-reported/1:hang"})   # held mid-trial
    before = wait_for(at_fault_point(log, "hanging", training_trial_1), 240, "trial 1 training", proc, log)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = run(args, tmp_path, env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    trials = optuna.load_study(study_name="killed", storage=storage).trials
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states
    assert states.count("COMPLETE") + states.count("PRUNED") == 3
    assert trials[0].datetime_complete == before[0].datetime_complete   # finished before the kill: not rerun
    assert states[1] == "FAIL" and trials[1].user_attrs.get("died")
    retry = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 1]
    assert len(retry) == 1 and retry[0].params == trials[1].params and retry[0].state.name == "COMPLETE"
    client = mlflow.MlflowClient()
    parent = client.search_runs([client.get_experiment_by_name("nerflow-test").experiment_id],
                                "tags.`nerflow.study` = 'killed'")[0]
    runs = children(parent.info.run_id)
    labels = [r.data.tags["nerflow.trial"] for r in runs]
    assert labels.count("0") == 1 and labels.count("defaults") == 1   # each finished trial ran once
    assert not [r for r in runs if r.info.status == "RUNNING"] and parent.info.status == "FINISHED"
    assert "trial 1 was left RUNNING" in done.stderr + done.stdout
    print(done.stdout)
    assert "best config: tune/killed/best.yaml" in done.stdout and "defaults " in done.stdout
