"""Registration is all or nothing: with the alias already on an older version, a real failure at each step of the
register stage (injected in the registry's own database or in the file system, not by mocking MLflow's client)
leaves no new version and the alias where it was, marks the run FAILED and reports the injected error.
And a forced rerun with identical weights registers nothing new unless asked to."""
from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nerflow import cache
from nerflow.models import weights_sha256
from nerflow.plan import make_plan
from nerflow.prefect_tasks import tracking

from .corpus import tiny_config

NAME = "rollback-ner"


@contextlib.contextmanager
def log_lines(logger: str) -> Iterator[list[str]]:
    """The messages `logger` emits, caught at the logger itself: Prefect may stop its records from propagating to
    the root logger, where caplog listens."""
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())
    target = logging.getLogger(logger)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


@contextlib.contextmanager
def db_fault(mlflow_store: str, table: str, event: str, when: str, message: str = "injected fault"):
    """A trigger that makes the registry's database refuse one write: a real failure of that step."""
    name = f"fault_{table}_{event}".lower()
    con = sqlite3.connect(mlflow_store.removeprefix("sqlite:///"))
    con.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} WHEN {when} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    con.commit()
    try:
        yield
    finally:
        con.execute(f"DROP TRIGGER IF EXISTS {name}")
        con.commit()
        con.close()


@contextlib.contextmanager
def failing_stage_output(cfg):
    """Putting the register stage's complete output under its key fails, after the version exists: an OSError
    injected there through the fault switch (nerflow.faults). This used to need `chattr +i`, which file systems
    such as overlayfs refuse, and the test then skipped itself."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NERFLOW_FAULT_POINT", "cache.output-written/register:error")
        yield


# step -> (extra config, fault, error it must raise). Each case differs in `evaluate.batch_size`, so it is a new
# registration of the same model (training reused), made while @challenger is on version 1.
FAULTS = {
    # tags and description are written in the version's own creation transaction: a refused tag means no version
    "version tags": ([], lambda store, cfg: db_fault(store, "model_version_tags", "INSERT",
                                                   f"NEW.name = '{NAME}' AND NEW.key = 'nerflow.weights_sha256'"),
                     "Model Version creation error"),    # MLflow's message after retrying the refused insert
    "alias move": ([], lambda store, cfg: db_fault(store, "registered_model_aliases", "UPDATE",
                                                 f"NEW.name = '{NAME}'"), "injected fault"),
    "reserved alias": (["registry.alias=v1"], lambda store, cfg: contextlib.nullcontext(), "reserved"),
    "stage output": ([], lambda store, cfg: failing_stage_output(cfg), "injected fault at cache.output-written"),
    # the stage's own record in the MLflow run, after the output is in place (its duration metric)
    "run record": ([], lambda store, cfg: db_fault(store, "metrics", "INSERT",
                                                 "NEW.key LIKE 'stage%register%seconds'"), "injected fault"),
}


@pytest.fixture(scope="module")
def first_version(tmp_path_factory, tiny_corpus, corpus_model_dir, cache_dir, mlflow_store) -> str:
    from nerflow.flows.pipeline import pipeline

    cfg = tiny_config(tmp_path_factory.mktemp("rollback"), tiny_corpus, corpus_model_dir, cache_dir,
                      f"registry.model_name={NAME}")
    result = pipeline(cfg)
    assert result["register"].new_version is True
    version = str(result["register"].version)
    assert aliases(MlflowClient(), NAME) == {"challenger": version, "champion": version}
    return str(result["register"].version)


@pytest.mark.parametrize("step", list(FAULTS))
def test_a_failure_at_any_step_after_the_version_exists_leaves_the_registry_as_it_was(
        step, first_version, tmp_path, tiny_corpus, corpus_model_dir, cache_dir, mlflow_store):
    from nerflow.flows.pipeline import pipeline

    extra, fault, error = FAULTS[step]
    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, f"registry.model_name={NAME}",
                      f"evaluate.batch_size={3 + list(FAULTS).index(step)}", *extra)
    with fault(mlflow_store, cfg), pytest.raises(Exception, match=error):
        pipeline(cfg)

    client = MlflowClient()
    assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == [first_version]
    assert aliases(client, NAME) == {"challenger": first_version, "champion": first_version}
    run = tracking.find_logical_run(client, cfg.experiment, make_plan(cfg).logical_run)
    assert run.info.status == "FAILED"
    assert error in run.data.tags["error"]


def test_a_forced_rerun_with_the_same_weights_registers_no_new_version(tmp_path, tiny_corpus, corpus_model_dir,
                                                                       cache_dir, mlflow_store):
    from nerflow.flows.pipeline import pipeline

    name = "same-weights-ner"
    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, f"registry.model_name={name}")
    first = pipeline(cfg)
    client = MlflowClient()
    (version,) = client.search_model_versions(f"name='{name}'")
    assert version.tags["nerflow.task"] == cfg.task
    weights = Path(cache_dir) / "train" / version.tags["nerflow.train_key"] / "model"
    assert version.tags["nerflow.weights_sha256"] == weights_sha256(weights)

    with log_lines("nerflow.register") as lines:
        again = pipeline(cfg, force_from="train")          # training recomputed: the same weights
    assert again["register"].new_version is False and again["register"].version == first["register"].version
    assert f"weights identical to {name} version {first['register'].version}: no new version registered " \
           "(use --force-register for one)" in lines
    assert [str(v.version) for v in client.search_model_versions(f"name='{name}'")] == [str(version.version)]

    forced = pipeline(cfg, force_from="register", force_register=True)
    assert forced["register"].new_version is True and forced["register"].version == first["register"].version + 1
    assert aliases(client, name)["challenger"] == str(forced["register"].version)
    record = cache.lookup(cfg.cache_dir, "register", make_plan(cfg).stages["register"].key) / "output.json"
    assert json.loads(record.read_text())["version"] == forced["register"].version   # the stage's record: the new one


def test_a_failing_clean_up_is_one_warning_and_the_first_error_is_raised(
        first_version, tmp_path, tiny_corpus, corpus_model_dir, cache_dir, mlflow_store):
    from nerflow.flows.pipeline import pipeline

    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, f"registry.model_name={NAME}",
                      "evaluate.batch_size=11")
    # the alias move fails, and so does deleting the version (a soft delete: an UPDATE of its row)
    with log_lines("nerflow.register") as lines, \
            db_fault(mlflow_store, "registered_model_aliases", "UPDATE", f"NEW.name = '{NAME}'", "alias refused"), \
            db_fault(mlflow_store, "model_versions", "UPDATE",
                     f"NEW.name = '{NAME}' AND NEW.current_stage = 'Deleted_Internal'", "delete refused"), \
            pytest.raises(Exception, match="alias refused"):
        pipeline(cfg)
    (warning,) = [line for line in lines if "could not undo" in line]
    assert "delete refused" in warning
    client = MlflowClient()
    assert aliases(client, NAME) == {"challenger": first_version, "champion": first_version}
    leftover = [v for v in client.search_model_versions(f"name='{NAME}'") if str(v.version) != first_version]
    for v in leftover:                  # what the failed clean-up left, so later tests see the registry as before
        client.delete_model_version(NAME, v.version)
    assert len(leftover) == 1
