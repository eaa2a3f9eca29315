"""Two `nerflow run` processes that share the train key (they differ only in `registry.model_name`), started
together: one trains, the other says it waits for it and then reuses its output; both register a version."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow import MlflowClient

from nerflow.config import resolved_dict
from nerflow.plan import make_plan
from nerflow.prefect_tasks import tracking

from .corpus import LONG, SHORT, tiny_config, write_conll

REPEATS, EPOCHS = 20, 30      # 35 steps an epoch on one thread, ~20 s: long enough for the second run to arrive
TRAIN = [f"train.epochs={EPOCHS}", "train.num_threads=1", "train.device=cpu", "train.precision=fp32"]
NAMES = ("concurrent-a", "concurrent-b")


def start(cfg_path: Path, mlflow_store: str) -> tuple[subprocess.Popen, Path]:
    """`nerflow run CFG` in its own process group, against this session's MLflow store and Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_path = cfg_path.with_suffix(".log")
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "nerflow.flows.cli", "run", str(cfg_path)],
                                cwd=cfg_path.parent, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, log_path


def test_two_runs_sharing_the_train_key_train_once_and_both_register(tmp_path, tiny_corpus, corpus_model_dir,
                                                                     mlflow_store):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_conll(corpus / "train.txt", ([LONG] + SHORT) * REPEATS)
    for name in ("valid.txt", "test.txt"):
        (corpus / name).write_bytes((tiny_corpus / name).read_bytes())
    cfgs, paths = [], []
    for name in NAMES:
        (tmp_path / name).mkdir()
        cfg = tiny_config(tmp_path / name, corpus, corpus_model_dir, tmp_path / "cache", f"registry.model_name={name}",
                          "experiment=nerflow-concurrent", *TRAIN)
        path = tmp_path / name / "pipeline.yaml"
        path.write_text(yaml.safe_dump(resolved_dict(cfg)))
        cfgs.append(cfg)
        paths.append(path)
    plans = [make_plan(cfg) for cfg in cfgs]
    assert plans[0].stages["train"].key == plans[1].stages["train"].key       # the same training ...
    assert plans[0].logical_run != plans[1].logical_run                        # ... for two different runs

    # The store's tables and the experiment exist before both start: creating either is not what is tested here
    # (two first runs that create the same experiment at once still race in MLflow: one gets "already exists").
    tracking.experiment_id(tracking.configure(), "nerflow-concurrent")
    started = [start(path, mlflow_store) for path in paths]
    try:
        for proc, _ in started:
            proc.wait(timeout=240)
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    logs = [log.read_text() for _, log in started]
    for (proc, _), log in zip(started, logs):
        assert proc.returncode == 0, log[-5000:]
        assert "Traceback" not in log, log[-5000:]

    key = plans[0].stages["train"].key
    waiting = [i for i, log in enumerate(logs) if "train: waiting for process" in log]
    assert len(waiting) == 1, logs                                             # they overlapped: one waited
    waiter, trainer = waiting[0], 1 - waiting[0]
    line = next(line for line in logs[waiter].splitlines() if "train: waiting for process" in line)
    assert f"process {started[trainer][0].pid} " in line and f"computing key {key}" in line
    assert f"run {plans[trainer].logical_run[:12]}" in line
    assert "computed by a concurrent run" in logs[waiter]

    client = MlflowClient()
    runs = [tracking.find_logical_run(client, "nerflow-concurrent", plan.logical_run) for plan in plans]
    assert [run.info.status for run in runs] == ["FINISHED", "FINISHED"]
    assert runs[trainer].data.tags["stage.train"] == "computed"
    assert runs[waiter].data.tags["stage.train"] == "reused"
    for name, run in zip(NAMES, runs):
        (version,) = client.search_model_versions(f"name='{name}'")
        assert version.run_id == run.info.run_id
    # both versions hold the one training's weights
    weights = {v.tags["nerflow.weights_sha256"] for name in NAMES
               for v in client.search_model_versions(f"name='{name}'")}
    assert len(weights) == 1
