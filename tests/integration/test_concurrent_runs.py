"""Two `nerflow run` processes that share the train key (they differ only in `registry.model_name`), started
together: one trains, the other says it waits for it and then reuses its output; both register a version.

The overlap is forced, not left to timing: whichever run gets the train lock first trains only once the other has
said it waits for that lock (a wrapper around `nerflow.locks.stage_lock` in each process)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from mlflow import MlflowClient

from nerflow.config import resolved_dict
from nerflow.plan import make_plan
from nerflow.prefect_tasks import tracking

from .corpus import LONG, SHORT, tiny_config, write_conll

REPEATS, EPOCHS = 20, 2       # 35 steps an epoch: the overlap is forced, so training need not be long
TRAIN = [f"train.epochs={EPOCHS}", "train.num_threads=1", "train.device=cpu", "train.precision=fp32"]
NAMES = ("concurrent-a", "concurrent-b")


RUN = textwrap.dedent("""
    import contextlib, sys, time
    from pathlib import Path
    from nerflow import locks
    other_log, real = Path(sys.argv[1]), locks.stage_lock

    @contextlib.contextmanager
    def trainer_waits_for_the_other(root, stage, key, logical_run="", poll_s=0.2):
        with real(root, stage, key, logical_run, poll_s) as waited:
            if stage == "train" and waited is None:   # this run holds the train lock without having waited
                deadline = time.monotonic() + 180
                while "train: waiting for process" not in (other_log.read_text() if other_log.exists() else ""):
                    if time.monotonic() > deadline:   # a failure, never a pass: the overlap did not happen
                        raise SystemExit("the other run never waited for the train lock")
                    time.sleep(0.05)
            yield waited
    locks.stage_lock = trainer_waits_for_the_other
    from nerflow.flows.cli import main
    raise SystemExit(main(sys.argv[2:]))
""")


def start(cfg_path: Path, other_log: Path, mlflow_store: str) -> tuple[subprocess.Popen, Path]:
    """`nerflow run CFG` in its own process group, against this session's MLflow store and Prefect test server;
    if it gets the train lock first, it trains once `other_log` says the other run waits for it."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_path = cfg_path.with_suffix(".log")
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", RUN, str(other_log), "run", str(cfg_path)],
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
    started = [start(path, other.with_suffix(".log"), mlflow_store) for path, other in zip(paths, paths[::-1])]
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
    assert len(waiting) == 1, logs                                             # one waited, the other trained
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
