"""One register key, one version, whatever the promote settings: two registrations of the same trained model by
two runs whose promote settings differ (two logical runs, so two run locks: as on two hosts, each with its own stage
cache) both get past "no version with this key" before either creates one. The register stage's real transaction
and compute run on a real MLflow registry (a sqlite store); only the look-up is wrapped, to hold the first
registration at that point until the second has either reached it too or is waiting for the lock."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from nerflow.config import load_config
from nerflow.outputs import Trained, Validated
from nerflow.prefect_tasks import register, tracking
from nerflow.prefect_tasks.stage import RunContext

NAME, KEY = "race-ner", "f" * 64


class HoldAfterLookup:
    """`find_version` as register.compute calls it; a caller that found nothing is held there until the other
    registration has also found nothing (the race, forced) or is waiting for the register key's lock (the fix:
    it cannot get to the look-up while this one holds the lock)."""

    def __init__(self, real):
        self.real, self.cond, self.after_lookup, self.waiting = real, threading.Condition(), 0, False

    def __call__(self, *args, **kwargs):
        found = self.real(*args, **kwargs)
        if found is None:
            with self.cond:
                self.after_lookup += 1
                self.cond.notify_all()
                assert self.cond.wait_for(lambda: self.after_lookup >= 2 or self.waiting, timeout=60), \
                    "the other registration neither looked up nor waited for the lock"
        return found

    def emit(self, record: logging.LogRecord) -> None:   # a logging handler on nerflow.register
        if record.getMessage().startswith("waiting for another registration"):
            with self.cond:
                self.waiting = True
                self.cond.notify_all()


def context(tmp_path: Path, client: MlflowClient, model_dir: Path, who: str, *promote: str):
    cfg_file = tmp_path / f"{who}.yaml"
    cfg_file.write_text("experiment: race\n")
    cfg = load_config(cfg_file, [f"data.dir={tmp_path}", f"model.name_or_path={model_dir}",
                                 f"cache_dir={tmp_path / who}", f"registry.model_name={NAME}", *promote])
    run_id = client.create_run(tracking.experiment_id(client, "race"), tags={tracking.ATTEMPTS_TAG: "1"}).info.run_id
    plan = SimpleNamespace(stages={"register": SimpleNamespace(key=KEY)}, model_revision=None)
    validated = tmp_path / who / "validated"
    validated.mkdir(parents=True)
    (validated / "labels.json").write_text(json.dumps(["O", "B-LOC", "I-LOC"]))
    upstream = {"train": Trained("train", "t", str(model_dir), False, model_dir=str(model_dir)),
                "validate": Validated("validate", "v", str(validated), False, data_hash="d" * 64)}
    out = tmp_path / who / "register"
    out.mkdir()
    return RunContext(cfg, plan, run_id, None, False), upstream, out


def test_one_register_key_makes_one_version_whatever_the_promote_settings(tmp_path, tiny_model_dir, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)   # the local store's lock: a file next to its database
    client = tracking.configure()
    hold = HoldAfterLookup(register.find_version)
    monkeypatch.setattr(register, "find_version", hold)
    handler, logger = logging.Handler(logging.INFO), logging.getLogger("nerflow.register")
    handler.emit = hold.emit
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)   # the lock's "waiting" line is INFO
    runs = [context(tmp_path, client, tiny_model_dir, "a", "promote.min_f1=0.1"),
            context(tmp_path, client, tiny_model_dir, "b", "promote.min_f1=0.5", "promote.mode=manual")]
    step = SimpleNamespace(stage="register", key=KEY, forced=False)
    errors: list[BaseException] = []

    def registration(ctx, upstream, out):
        try:
            with register.transaction(ctx, step):
                register.compute(ctx, step, upstream, out)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=registration, args=run) for run in runs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
    finally:
        logger.removeHandler(handler)
    assert not errors, errors
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert [v.tags[register.KEY_TAG] for v in versions] == [KEY]   # one version, not one per run
    outputs = [json.loads((out / "output.json").read_text()) for _, _, out in runs]
    assert {o["version"] for o in outputs} == {int(versions[0].version)}
    assert sorted(o["new_version"] for o in outputs) == [False, True]   # the second found the first's


@pytest.fixture(autouse=True)
def _tracking_uri_back():
    """tracking.configure() sets MLflow's process-wide URIs: put them back for the tests after this one."""
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])
