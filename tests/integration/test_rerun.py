"""Rerunning after a failure: the failed stage and those after it run again, nothing before it, inside the same
MLflow run, and the registered model equals that of a run that never failed. Only transient faults are retried;
a finished run is not redone; `nerflow rerun` and `nerflow runs` work from MLflow run ids."""
from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from nerflow.config import resolved_dict
from nerflow.flows import cli
from nerflow.graph import PIPELINE
from nerflow.ner.validate import ValidationFailed

from .corpus import copy_cache, tiny_config

STAGES = PIPELINE.names
EXPERIMENT = "nerflow-rerun"
# The library function each stage runs, patched where the task looks it up.
STAGE_FUNCTIONS = {
    "validate": ("nerflow.ner.validate", "validate_corpus"),
    "tokenize": ("nerflow.ner.tokenization", "tokenize_corpus"),
    "train": ("nerflow.ner.training", "train_job"),
    "evaluate": ("nerflow.ner.evaluation", "evaluate_model"),
    "register": ("nerflow.prefect_tasks.register", "create_version"),
    "promote": ("nerflow.promotion", "decide"),
}


def rerun_config(tmp_path: Path, corpus: Path, model_dir: Path, cache_dir: Path, model_name: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return tiny_config(tmp_path, corpus, model_dir, cache_dir, f"experiment={EXPERIMENT}",
                       f"registry.model_name={model_name}", "train.epochs=6")


class Spies:
    """Counts calls of every stage's library function; `fail_once` makes a stage raise a deterministic error once."""

    def __init__(self, monkeypatch):
        self.calls: Counter[str] = Counter()
        self.fail_once: set[str] = set()
        for stage, (module_name, attr) in STAGE_FUNCTIONS.items():
            module = importlib.import_module(module_name)
            monkeypatch.setattr(module, attr, self._wrap(stage, getattr(module, attr)))

    def _wrap(self, stage, original):
        @functools.wraps(original)
        def spy(*args, **kwargs):
            self.calls[stage] += 1
            if stage in self.fail_once:
                self.fail_once.discard(stage)
                raise RuntimeError(f"injected failure in {stage}")
            return original(*args, **kwargs)

        return spy

    def ran(self) -> dict[str, bool]:
        return {stage: self.calls[stage] > 0 for stage in STAGES}


@pytest.fixture
def spies(monkeypatch) -> Spies:
    return Spies(monkeypatch)


def runs_of(model_name: str) -> list:
    """Every MLflow run of the pipeline configured to register `model_name`, newest first."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], f"params.`registry.model_name` = '{model_name}'",
                              order_by=["attributes.start_time DESC"])


def versions_of(model_name: str) -> list[int]:
    return sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{model_name}'"))


def registered_weights(model_name: str, version: int, dst: Path) -> bytes:
    dst.mkdir(parents=True, exist_ok=True)
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version}", dst_path=str(dst)))
    (weights,) = folder.glob("artifacts/*/model.safetensors")      # the Hugging Face folder served by the pyfunc
    return weights.read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_corpus, corpus_model_dir, mlflow_store):
    """A run that never failed: its own cache and model name, the same settings as every run below."""
    from nerflow.flows.pipeline import pipeline

    cfg = rerun_config(tmp_path_factory.mktemp("reference"), tiny_corpus, corpus_model_dir,
                       tmp_path_factory.mktemp("reference-cache"), "rerun-reference")
    return cfg, pipeline(cfg)


@pytest.fixture(scope="module")
def reference_weights(reference, tmp_path_factory) -> bytes:
    cfg, result = reference
    return registered_weights(cfg.registry.model_name, result["register"].version,
                              tmp_path_factory.mktemp("reference-model"))


@pytest.mark.parametrize("failing", STAGES)
def test_rerun_after_a_failure_redoes_only_the_failed_stage_and_later(failing, spies, reference, reference_weights,
                                                                       tmp_path, tiny_corpus, corpus_model_dir):
    from nerflow.flows.pipeline import pipeline

    name = f"rerun-{failing}-ner"
    cfg = rerun_config(tmp_path / "cfg", tiny_corpus, corpus_model_dir, tmp_path / "cache", name)
    spies.fail_once.add(failing)
    with pytest.raises(RuntimeError, match=f"injected failure in {failing}"):
        pipeline(cfg)
    after = STAGES.index(failing)
    assert spies.ran() == {stage: i <= after for i, stage in enumerate(STAGES)}
    assert spies.calls[failing] == 1                      # a deterministic error is not retried
    (failed,) = runs_of(name)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["failed_stage"] == failing

    spies.calls.clear()
    result = pipeline(cfg)                            # the same command again
    assert spies.ran() == {stage: i >= after for i, stage in enumerate(STAGES)}
    assert result.stages == {stage: i < after for i, stage in enumerate(STAGES)}   # reused?

    (run,) = runs_of(name)                                # the logical run continued: still one MLflow run
    assert run.info.run_id == failed.info.run_id == result.run_id
    assert run.data.tags["nerflow.attempts"] == "2"
    assert run.info.status == "FINISHED"
    # the failure is gone, not set to "" (a missing tag reads as none); the rerun keeps the run's name
    assert {"failed_stage", "error"}.isdisjoint(run.data.tags) and run.info.run_name == failed.info.run_name

    _, ref = reference
    assert result["evaluate"].metrics == ref["evaluate"].metrics
    assert versions_of(name) == [result["register"].version]
    assert registered_weights(name, result["register"].version, tmp_path / "model") == reference_weights


def test_transient_tracking_error_is_retried_and_the_run_finishes(monkeypatch, reference):
    from nerflow.flows.pipeline import pipeline
    from nerflow.prefect_tasks import datasets

    original, calls = datasets.log_dataset, []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionError("connection refused")
        return original(*args, **kwargs)

    monkeypatch.setattr(datasets, "log_dataset", flaky)
    cfg, first = reference
    result = pipeline(cfg)
    assert len(calls) > 1                                 # called again after the failed call: retried
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"
    assert result["register"].version == first["register"].version


def test_a_retry_after_a_transient_fault_does_not_redo_a_finished_stage(monkeypatch, spies, reference,
                                                                       reference_weights, tmp_path, tiny_corpus,
                                                                       corpus_model_dir):
    """Training finished, then the tracking server hiccuped: Prefect retries the task, which keeps the trained
    model instead of training again."""
    from nerflow.flows.pipeline import pipeline
    from nerflow.prefect_tasks import tracking

    original, faults = tracking.log_tags, []

    def flaky(*args, **kwargs):
        if spies.calls["train"] and not faults:            # the first tracking call after training
            faults.append(args)
            raise ConnectionError("connection refused")
        return original(*args, **kwargs)

    monkeypatch.setattr(tracking, "log_tags", flaky)
    name = "rerun-retry-ner"
    cfg = rerun_config(tmp_path / "cfg", tiny_corpus, corpus_model_dir, tmp_path / "cache", name)
    result = pipeline(cfg)
    assert faults and spies.calls["train"] == 1
    assert spies.ran() == {stage: True for stage in STAGES}
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"
    assert result["evaluate"].metrics == reference[1]["evaluate"].metrics
    assert registered_weights(name, result["register"].version, tmp_path / "model") == reference_weights


@pytest.fixture(scope="module")
def bad_data_run(tmp_path_factory, tiny_corpus, corpus_model_dir, mlflow_store):
    """A run whose train file has a broken tag: (the validation function's call count, the failed MLflow run)."""
    from nerflow.flows.pipeline import pipeline

    corpus = tmp_path_factory.mktemp("bad-corpus")
    for f in tiny_corpus.iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    train = corpus / "train.txt"
    assert "Berlin B-LOC" in train.read_text()
    train.write_text(train.read_text().replace("Berlin B-LOC", "Berlin LOCATION", 1))
    cfg = rerun_config(tmp_path_factory.mktemp("bad"), corpus, corpus_model_dir,
                       tmp_path_factory.mktemp("bad-cache"), "rerun-bad-data")
    with pytest.MonkeyPatch.context() as mp:
        spies = Spies(mp)
        with pytest.raises(ValidationFailed, match="train.txt"):
            pipeline(cfg)
    (run,) = runs_of("rerun-bad-data")
    return spies.calls, run


def test_bad_data_fails_once_without_retry(bad_data_run):
    calls, run = bad_data_run
    assert calls["validate"] == 1
    assert calls["tokenize"] == 0
    assert run.info.status == "FAILED"
    assert run.data.tags["failed_stage"] == "validate"
    assert versions_of("rerun-bad-data") == []


def test_same_config_after_success_registers_nothing_new(reference, spies):
    from nerflow.flows.pipeline import pipeline

    cfg, first = reference
    again = pipeline(cfg)
    assert again.stages == {stage: True for stage in STAGES}
    assert not any(spies.ran().values())
    assert again["register"].version == first["register"].version
    assert again["evaluate"].metrics == first["evaluate"].metrics
    assert versions_of(cfg.registry.model_name) == [first["register"].version]


def test_cli_says_already_registered_without_starting_prefect_or_torch(reference, tmp_path, mlflow_store):
    cfg, first = reference
    cfg_path = tmp_path / "resolved.yaml"
    cfg_path.write_text(yaml.safe_dump(resolved_dict(cfg)))
    script = ("import sys\nfrom nerflow.flows import cli\nrc = cli.main(['run', sys.argv[1]])\n"
              "print('loaded:', {m: m in sys.modules for m in ('prefect', 'torch', 'transformers')})\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(cfg_path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"already registered: {cfg.registry.model_name} version {first['register'].version}" in proc.stdout
    assert "loaded: {'prefect': False, 'torch': False, 'transformers': False}" in proc.stdout
    assert versions_of(cfg.registry.model_name) == [first["register"].version]


@pytest.fixture(scope="module")
def finished(reference, tmp_path_factory, tiny_corpus, corpus_model_dir):
    """A finished run of its own (own model name) on a copy of the reference's cache: only its registration and
    promotion were computed."""
    from nerflow.flows.pipeline import pipeline

    ref_cfg, _ = reference
    cache = tmp_path_factory.mktemp("finished-cache") / "cache"
    copy_cache(ref_cfg.cache_dir, cache)
    cfg = rerun_config(tmp_path_factory.mktemp("finished"), tiny_corpus, corpus_model_dir, cache, "rerun-cli-ner")
    return cfg, pipeline(cfg)


def promotion_said(out: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith("promotion:")]
    return line


def assert_attempt_agrees(name: str, version: int, out: str) -> None:
    """What the summary printed, the run's tags and the version's tags all describe this attempt's gate."""
    (run,) = runs_of(name)
    tagged = MlflowClient().get_model_version(name, str(version)).tags
    said = promotion_said(out)
    assert said.startswith(f"promotion:  {run.data.tags['promotion']} for @champion")
    assert said.endswith(run.data.tags["promotion_reason"])
    assert tagged["nerflow.promotion"] == run.data.tags["promotion"]
    assert tagged["nerflow.reason"] == run.data.tags["promotion_reason"]


def test_rerun_from_evaluate_continues_the_run_and_registers_only_new_weights(finished, spies, tmp_path,
                                                                             monkeypatch, capsys):
    """`rerun RUN --from evaluate`: a new attempt of the same MLflow run that really re-evaluates (its metrics
    replace the stored ones); the weights are the same, so no new version (and the output says so) unless
    --force-register asks for one. Each time the summary, the run's tags and the version's gate tags agree."""
    from nerflow import task_types

    cfg, first = finished
    name = cfg.registry.model_name
    evaluate_entry = task_types.entry(cfg.task, "evaluate")
    original = evaluate_entry.evaluate_model

    def evaluated_differently(*args, **kwargs):   # what a changed evaluation gives: the rerun must report it
        return {**original(*args, **kwargs), "test/f1": 0.123}

    monkeypatch.setattr(evaluate_entry, "evaluate_model", evaluated_differently)
    monkeypatch.chdir(tmp_path)                           # the config comes from the run, not from here
    assert cli.main(["rerun", first.run_id, "--from", "evaluate"]) == 0
    out = capsys.readouterr().out
    # the register stage ran (tag below) but created no version: create_version, its spied function, was not called
    assert spies.ran() == {"validate": False, "tokenize": False, "train": False, "evaluate": True, "register": False,
                           "promote": False}   # promote: version 1 is @champion already, the gate had nothing to decide
    assert f"weights identical to {name} version {first['register'].version}: no new version registered" in out
    assert versions_of(name) == [first["register"].version]
    (run,) = runs_of(name)                                # the same MLflow run, one attempt more
    assert run.info.run_id == first.run_id and run.info.status == "FINISHED"
    assert run.data.tags["nerflow.attempts"] == "2"
    assert {s: run.data.tags[f"stage.{s}"] for s in STAGES} == {
        "validate": "reused", "tokenize": "reused", "train": "reused", "evaluate": "computed", "register": "computed",
        "promote": "computed"}
    assert run.data.metrics["test/f1"] == 0.123 and "0.1230  (micro)" in out          # the new metrics, not the old
    assert "already @champion" in promotion_said(out)
    assert_attempt_agrees(name, first["register"].version, out)

    monkeypatch.setattr(evaluate_entry, "evaluate_model", original)
    assert cli.main(["rerun", first.run_id, "--from", "register", "--force-register"]) == 0
    out = capsys.readouterr().out
    new = first["register"].version + 1
    assert versions_of(name) == [first["register"].version, new]
    assert f"registered: {name} version {new}" in out
    alias = MlflowClient().get_model_version_by_alias(name, cfg.registry.alias)
    assert int(alias.version) == new
    (run,) = runs_of(name)
    assert run.info.run_id == first.run_id and run.data.tags["nerflow.attempts"] == "3"
    # the same weights as the champion: the gate says tie, and everything says so (not the first attempt's answer)
    assert "rejected for @champion" in promotion_said(out) and "no champion yet" not in out
    assert_attempt_agrees(name, new, out)


def test_rerun_from_train_retrains_and_registers_the_new_weights(finished, tmp_path, monkeypatch, capsys):
    """`rerun RUN --from train` replaces the train stage's output: a retraining that gives other weights (here a
    changed seed, as a changed library would) shows up as a new version holding exactly those weights."""
    from nerflow import cache, task_types
    from nerflow.models import weights_sha256

    cfg, first = finished
    name = cfg.registry.model_name
    before = cache.lookup(cfg.cache_dir, "train", first["train"].key)
    trainer = task_types.entry(cfg.task, "train")
    original = trainer.train_job
    monkeypatch.setattr(trainer, "train_job", lambda job, *a, **k: original({**job, "seed": job["seed"] + 1}, *a, **k))
    monkeypatch.chdir(tmp_path)
    known = versions_of(name)
    assert cli.main(["rerun", first.run_id, "--from", "train"]) == 0
    out = capsys.readouterr().out
    after = cache.lookup(cfg.cache_dir, "train", first["train"].key)
    assert after != before and before.is_dir()           # a new generation; the old one stays until pruned
    assert weights_sha256(after / "model") != weights_sha256(before / "model")
    new = max(versions_of(name))
    assert versions_of(name) == [*known, new] and f"registered: {name} version {new}" in out
    tagged = MlflowClient().get_model_version(name, str(new)).tags
    assert tagged["nerflow.weights_sha256"] == weights_sha256(after / "model")
    assert_attempt_agrees(name, new, out)


def test_runs_lists_status_and_the_failed_stage(bad_data_run, reference, capsys):
    _, failed = bad_data_run
    _, ok = reference
    assert cli.main(["runs", "--limit", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "failed stage" in lines[0] and "status" in lines[0]
    (failed_line, continue_line) = [line for line in lines if failed.info.run_id in line]
    assert failed_line.split()[2:6] == ["FAILED", "1", "0/6", "validate"]
    assert continue_line.split() == ["continue:", "nerflow", "rerun", failed.info.run_id]
    (ok_line,) = [line for line in lines if ok.run_id in line]
    assert ok_line.split()[2:6] == ["FINISHED", "1", "6/6", "-"]
    assert cli.main(["runs", "--limit", "200", "--json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["run_id"] == failed.info.run_id]
    assert row["stages"] == {"validate": "failed", "tokenize": None, "train": None, "evaluate": None,
                             "register": None, "promote": None}


def test_a_failed_or_killed_run_that_a_later_run_completed_is_superseded_not_continued(mlflow_store, capsys):
    """Runs as the tracking store holds them (the pipeline's tags and statuses, no pipeline needed): a killed run
    whose logical run another run finished afterwards says `superseded by` that run instead of `continue:` (its
    rerun would only answer "nothing to do"); a failed run whose logical run finished only before it started, or
    never, still says how to continue it."""
    import time

    from nerflow.prefect_tasks import tracking

    client = tracking.configure()
    exp = tracking.experiment_id(client, "nerflow-superseded")
    now = int(time.time() * 1000)

    def logged(logical: str, status: str, start: int, end: int) -> str:
        run_id = client.create_run(exp, start_time=now + start * 1000,
                                   tags={"nerflow.logical_run": logical, "nerflow.attempts": "1"}).info.run_id
        client.set_terminated(run_id, status, end_time=now + end * 1000)
        return run_id

    killed, completed = logged("l-superseded", "KILLED", -60, -50), logged("l-superseded", "FINISHED", -40, -10)
    old = logged("l-again", "FINISHED", -120, -100)
    failed, never = logged("l-again", "FAILED", -30, -20), logged("l-never", "FAILED", -30, -20)
    assert cli.main(["runs", "--limit", "500", "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows[killed]["superseded_by"], rows[killed]["continue"]) == (completed, None)
    for run_id in (failed, never):
        assert (rows[run_id]["superseded_by"], rows[run_id]["continue"]) == (None, f"nerflow rerun {run_id}")
    assert (rows[completed]["superseded_by"], rows[old]["superseded_by"]) == (None, None)
    assert cli.main(["runs", "--limit", "500"]) == 0
    lines = capsys.readouterr().out.splitlines()
    below = lines[[i for i, line in enumerate(lines) if killed in line][0] + 1].split()
    assert below == ["superseded", "by", completed]
    assert not [line for line in lines if line.split()[-1:] == [killed] and "continue:" in line]


def test_a_rerun_id_matching_no_run_or_several_is_bad_input(mlflow_store, capsys):
    """Matched whole: an MLflow run id, or a Prefect flow-run id among a run's attempts; never a substring."""
    from nerflow.flows.errors import EXIT_BAD_INPUT
    from nerflow.prefect_tasks import tracking

    client = tracking.configure()
    exp = tracking.experiment_id(client, "nerflow-rerun-ids")
    shared, own = "0f1e2d3c-0000-4000-8000-00000000abcd", "0f1e2d3c-0000-4000-8000-00000000beef"
    first, _ = [client.create_run(exp, tags={"nerflow.logical_run": "x", "prefect_flow_run_ids": ids}).info.run_id
                for ids in (f"{shared},{own}", shared)]   # two runs claim one flow run (a hand-edited tag, say)
    plain = client.create_run(exp).info.run_id     # an MLflow run that is not a pipeline run
    for given, said in [(shared, "belongs to 2 MLflow runs"), (own[:-4], "no pipeline run with MLflow run id or "
                                                                          "Prefect flow-run id"),
                        (plain, "is not a nerflow pipeline run"), ("x'; drop", "is not an MLflow run id")]:
        assert cli.main(["rerun", given]) == EXIT_BAD_INPUT, given
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1, (given, err)
    from nerflow.flows.past_run import find_run

    assert find_run(client, own).info.run_id == first             # the whole id, among the run's attempts


@pytest.mark.parametrize("run_id, from_stage, said", [
    ("0123456789abcdef0123456789abcdef", "evalute", "no stage 'evalute' (did you mean 'evaluate'?): the stages are "
                                                    "validate, tokenize, pretrain, train, evaluate, distill, export, "
                                                    "reference, register, promote"),
    ("0123456789abcdef0123456789abcdef", "evaluate", "no pipeline run with MLflow run id or Prefect flow-run id "
                                                     "'0123456789abcdef0123456789abcdef'"),
    ("'; drop", None, "is not an MLflow run id or a Prefect flow-run id"),
], ids=["unknown-stage", "no-such-run", "not-an-id"])
def test_the_rerun_flow_refuses_bad_parameters_with_one_message(run_id, from_stage, said, mlflow_store, capfd):
    """What the Prefect UI's Run form of `nerflow-rerun/rerun` can be given: a bad stage or an id that matches no
    run fails the flow run with one line, before anything is written; the terminal (`nerflow serve`, a worker)
    gets that line once, as `error: ...`."""
    from nerflow.flows.rerun import rerun_pipeline

    def all_runs():
        client = MlflowClient()
        return len(client.search_runs([e.experiment_id for e in client.search_experiments()] or ["0"]))

    before = all_runs()
    state = rerun_pipeline(run_id, from_stage, return_state=True)
    assert all_runs() == before
    assert state.is_failed()
    assert state.message.startswith("rerun refused: ") and said in state.message, state.message
    assert "\n" not in state.message
    printed = capfd.readouterr().err.splitlines()
    assert [line for line in printed if said in line] == [f"error: {state.message.removeprefix('rerun refused: ')}"], \
        printed
