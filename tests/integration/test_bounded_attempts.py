"""State that grows per attempt stays bounded: a schedule failing 300 times in a row keeps one clear line per failure
and a usable MLflow run (tasks/attempts.py), and a run's Prefect concurrency limit goes when its holder is done,
also when another holder is just about to take it (tasks/global_locks.py)."""
from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from nerflow.flows import cli


@pytest.fixture
def ram_store(tmp_path_factory, monkeypatch):
    """A real sqlite store of its own, on a RAM disk where there is one: 300 attempts commit ~2,500 times, none of
    them need to wait for a disk."""
    import shutil
    import tempfile
    from pathlib import Path

    from . import big_registry

    root = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else tmp_path_factory.mktemp("ram")
    try:
        big_registry.schema(root / "mlflow.db")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_schedule_failing_300_times_keeps_one_line_per_failure_and_a_usable_run(
        ram_store, tiny_corpus, corpus_model_dir, tmp_path, capsys):
    """The real path of every attempt (tracking.pipeline_run: continue the logical run's MLflow run, record the
    attempt, tag the failure), 300 times with a new Prefect flow-run id each. The old code appended every id to one
    tag, which MLflow refused past 8,000 characters: attempt ~217 on failed as bad input before any stage ran."""
    from nerflow.data import DataError
    from nerflow.flows import errors
    from nerflow.flows.past_run import find_run
    from nerflow.prefect_tasks import tracking

    from .corpus import tiny_config

    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, tmp_path / "cache", "experiment=nerflow-300-failures")
    client, logical_run, ids = tracking.configure(), f"failing-{uuid.uuid4().hex[:12]}", []
    said = f"{tiny_corpus / 'train.txt'}:3: a tag no scheme knows"
    for _ in range(300):
        ids.append(str(uuid.uuid4()))
        with pytest.raises(Exception) as failed:
            with tracking.pipeline_run(client, cfg, logical_run, ids[-1]):
                raise DataError(said)   # the stage's failure, every time
        exc = failed.value
        assert errors.classify(exc) == errors.EXIT_BAD_INPUT and errors.message(exc, errors.EXIT_BAD_INPUT) == \
            f"error: {said}", \
            (len(ids), exc)

    from nerflow.prefect_tasks import attempts

    run = tracking.find_logical_run(client, cfg.experiment, logical_run)
    tags = run.data.tags
    assert (run.info.status, tags["nerflow.attempts"], tags["error"]) == ("FAILED", "300", f"DataError: {said}")
    assert tags[attempts.FLOW_RUNS_TAG].split(",") == ids[-attempts.KEEP:]
    assert tags[attempts.DROPPED_TAG] == str(300 - attempts.KEEP)
    recorded = attempts.read(client, run.info.run_id)
    assert [(r["attempt"], r["flow_run_id"]) for r in recorded] == list(zip(range(1, 301), ids))
    tracking.log_tags(client, run.info.run_id, {"still": "usable"})      # the run still takes tags and metrics
    tracking.log_metrics(client, run.info.run_id, {"after/failures": 300.0})
    assert client.get_run(run.info.run_id).data.metrics["after/failures"] == 300.0
    # `nerflow rerun <flow-run id>` finds the run by its first attempt's id (artifact only) and its last (tag)
    assert find_run(client, ids[0]).info.run_id == find_run(client, ids[-1]).info.run_id == run.info.run_id
    assert cli.main(["rerun", ids[0], "--dry-run"]) == 0
    assert f"rerunning {run.info.run_id} (FAILED)" in capsys.readouterr().out


def test_a_concurrency_limit_is_deleted_by_its_holder_even_as_another_is_about_to_take_it():
    """Holder A deletes the run's limit when done. Waiter B read the limit (taken) and is stopped right there, by
    a barrier, until A has deleted it: B then asks for a slot on a limit that no longer exists, creates it again,
    takes it, and deletes it in turn. One holder at a time throughout, and no limit left behind."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from nerflow.prefect_tasks import global_locks

    name = global_locks.limit_name("run", f"race-{uuid.uuid4().hex[:8]}")
    b_read_it, a_deleted_it = threading.Event(), threading.Event()
    spans, failures = {}, []

    class StopWaiterAfterItsRead(logging.Handler):
        def emit(self, record):   # B's "waiting for ..." comes after its read of the limit, before its acquire
            if threading.current_thread().name == "B" and name in record.getMessage():
                b_read_it.set()
                assert a_deleted_it.wait(60)

    def hold(who: str, then: threading.Event | None = None) -> None:
        try:
            with global_locks.global_lock(name, timeout_s=60):
                entered = time.monotonic()
                if who == "A":
                    assert b_read_it.wait(60), "B never got to wait"
                spans[who] = (entered, time.monotonic())
            if then is not None:
                then.set()
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            failures.append((who, e))

    handler = StopWaiterAfterItsRead()
    logger = logging.getLogger("nerflow.locks")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        a = threading.Thread(target=hold, args=("A", a_deleted_it), name="A")
        a.start()
        with get_client(sync_client=True) as client:   # A holds it before B starts
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "A" not in spans:
                try:
                    if client.read_global_concurrency_limit_by_name(name).active_slots == 1:
                        break
                except ObjectNotFound:
                    pass
                time.sleep(0.05)
        b = threading.Thread(target=hold, args=("B",), name="B")
        b.start()
        a.join(120)
        b.join(120)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not failures, failures
    assert spans["B"][0] >= spans["A"][1], spans           # B held it only after A let go
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_global_concurrency_limit_by_name(name)   # no limit left behind
