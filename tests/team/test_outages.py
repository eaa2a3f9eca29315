"""Outages of the team servers, through real `nerflow` processes against the real servers of the `team` fixture
(MLflow on PostgreSQL with proxied artifacts, Prefect on PostgreSQL).

- MLflow down when a run starts: exit 3 within MLFLOW_DOWN_BOUND_S, one `error:` line naming the tracking URI (plus
  one `hint:`), no other warning, error or traceback.
- MLflow killed (SIGKILL) during training: the run fails (exit 3) within KILLED_MID_RUN_BOUND_S, no model version is
  left half-made, and once the server is back the same command continues the same MLflow run (attempt 2), reuses
  validate and tokenize, resumes training from its checkpoint and registers exactly one version.
- Prefect down (PREFECT_API_URL names a closed port): exit 3, one `error:` line naming that URL and a hint to unset
  PREFECT_API_URL; `nerflow schedule` without PREFECT_API_URL: exit 3 naming `make team-up`.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from nerflow import faults
from nerflow.config import resolved_dict
from nerflow.flows.errors import EXIT_OK, EXIT_UNAVAILABLE
from nerflow.flows.prefect_server import free_port
from tests.conftest import build_tiny_model
from tests.integration.corpus import LONG, SHORT, UNSEEN, tiny_config, write_conll
from tests.integration.processes import one_error, run, start, wait_for

from .conftest import MLFLOW_AUTH

# MLflow down before the run starts: the first MLflow call (reaping dead runs, before Prefect or torch is imported)
# fails after MLflow's HTTP retries, which the CLI bounds (flows/errors.py MLFLOW_HTTP_BOUNDS: 2 retries, backoff
# factor 1: ~2-3 s per call); no stage runs, so no task retry. Measured 5-8 s (~4 s of it Python start-up and
# imports); 30 s as tests/integration/test_bad_input.py UNREACHABLE_BOUND_S, room for a busy 2-core machine.
MLFLOW_DOWN_BOUND_S = 30
# MLflow killed during training, from the kill to the exit: the next metric flush fails (HTTP retries, ~3 s), the
# train task is retried twice (tasks/stage.py: after 2 s and 10 s, each try failing on its first MLflow call, ~3 s),
# then closing the run fails call by call: the system-metrics sampler (stopping it waits <= 10 s), the run log
# artifact (~3 s), the error tags (~3 s). That adds up to 25-37 s; measured 29-30 s (three runs). 90 s: 3x that.
KILLED_MID_RUN_BOUND_S = 90
# PREFECT_API_URL names a closed port: the flow's first Prefect call (its API version check) fails at once, no
# retry. Measured 7-12 s, most of it importing the flow's modules (Prefect, torch, transformers).
PREFECT_DOWN_BOUND_S = 60

REPEATS = 20   # ([LONG] + SHORT) * 20: 140 windows of max_length 16, 35 steps of 4 per epoch
# 420 steps, ~5 s of training here (~450 samples/s): still going when the server is killed right after the first
# checkpoint (step 10, a few tenths of a second in); the checkpoints let the next attempt resume.
TRAIN = ["train.epochs=12", "train.batch_size=4", "train.checkpoint_every=10", "train.num_threads=1",
         "train.device=cpu", "train.log_every=5"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Random-init tiny BERT whose tokenizer, trained here on the corpus, keeps every corpus word whole."""
    texts = [" ".join(w for w, _ in s) for s in [LONG, *SHORT, *UNSEEN]] * 10
    return build_tiny_model(tmp_path_factory.mktemp("outage-bert"), texts)


@pytest.fixture
def env(team_env, tmp_path) -> dict[str, str]:
    """The team servers, one thread for torch, and a Prefect home of the test's own."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    return {**team_env, "PREFECT_HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_config(tmp_path: Path, model_dir: Path, name: str) -> Path:
    """A tiny pipeline config in tmp_path; experiment and registered model named after `name`."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_conll(corpus / "train.txt", ([LONG] + SHORT) * REPEATS)
    write_conll(corpus / "valid.txt", [LONG] + SHORT[:3] + UNSEEN)
    write_conll(corpus / "test.txt", [LONG] + SHORT[2:] + UNSEEN[:2])
    cfg = tiny_config(tmp_path, corpus, model_dir, tmp_path / "cache", f"experiment={name}",
                      f"registry.model_name={name}", *TRAIN)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(resolved_dict(cfg)))
    return path


def hint(result) -> str:
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("hint: ")]
    return line


@contextlib.contextmanager
def stopped_mlflow(team, kill: bool = False):
    """The MLflow server down for the block, and up again after it whatever happened: later tests need it."""
    try:
        team.stop_mlflow(kill=kill)
        yield
    finally:
        team.start_mlflow()


def stop_group(proc: subprocess.Popen) -> None:
    """Kill what is left of a `nerflow` process group this test started (a no-op when it exited cleanly)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


# --- the MLflow tracking server, over its REST API (what the server holds, not what nerflow says) ---

def rest(team, method: str, path: str, **kw) -> dict:
    response = httpx.request(method, f"{team.mlflow_uri}/api/2.0/mlflow/{path}", auth=MLFLOW_AUTH, timeout=30, **kw)
    response.raise_for_status()
    return response.json()


def model_versions(team, model: str) -> list[dict]:
    return rest(team, "GET", "model-versions/search", params={"filter": f"name='{model}'"}).get("model_versions", [])


def pipeline_runs(team, experiment: str, logical_run: str | None = None) -> list[dict]:
    """The runs of `experiment` that carry a logical pipeline run (tag nerflow.logical_run), or this one."""
    try:
        exp = rest(team, "GET", "experiments/get-by-name", params={"experiment_name": experiment})["experiment"]
    except httpx.HTTPStatusError as e:
        if e.response.status_code == 404:
            return []
        raise
    which = f"= '{logical_run}'" if logical_run else "!= ''"
    found = rest(team, "POST", "runs/search", json={"experiment_ids": [exp["experiment_id"]], "max_results": 100,
                                                    "filter": f"tags.`nerflow.logical_run` {which}"})
    return found.get("runs", [])


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def checkpoints(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "train").glob("*.work/checkpoints/step-*"))


def test_mlflow_server_down_when_a_run_starts(team, env, tmp_path, model_dir):
    name = unique("outage-down")
    cfg = write_config(tmp_path, model_dir, name)
    with stopped_mlflow(team):
        started = time.monotonic()
        result = run(["run", str(cfg)], tmp_path, env, timeout=300)
        elapsed = time.monotonic() - started
    print(f"MLflow down at start: exit {result.returncode} after {elapsed:.1f} s\n{result.stderr}")
    one_error(result, EXIT_UNAVAILABLE,
              rf"^error: cannot reach the MLflow tracking server at {re.escape(team.mlflow_uri)}: connection refused$")
    assert "MLFLOW_TRACKING_URI" in hint(result) and "make team-up" in hint(result)
    assert elapsed < MLFLOW_DOWN_BOUND_S, (elapsed, result.stderr[-3000:])
    assert pipeline_runs(team, name) == [] and model_versions(team, name) == []


def test_mlflow_server_killed_mid_training_then_the_same_command_continues(team, env, tmp_path, model_dir):
    name = unique("outage-killed")
    cfg = write_config(tmp_path, model_dir, name)
    # held at its first checkpoint until the server is dead (SIGUSR1 lets it go on): training is under way then,
    # however fast the machine trains
    proc, log = start(["run", str(cfg)], tmp_path, {**env, faults.ENV: "checkpoint.renamed:pause"})
    try:
        wait_for(lambda: checkpoints(tmp_path) and "pausing at checkpoint.renamed" in log.read_text(), 300,
                 "a first training checkpoint", proc, log)
        (before,) = pipeline_runs(team, name)   # the run opened before validate; training is under way
        assert before["info"]["status"] == "RUNNING"
        with stopped_mlflow(team, kill=True):
            killed = time.monotonic()
            os.kill(proc.pid, signal.SIGUSR1)
            try:
                proc.wait(timeout=KILLED_MID_RUN_BOUND_S * 3)
            except subprocess.TimeoutExpired:
                pytest.fail(f"nerflow run still running {KILLED_MID_RUN_BOUND_S * 3} s after MLflow was killed:\n"
                            f"{log.read_text()[-3000:]}")
            failed_after = time.monotonic() - killed
    finally:
        stop_group(proc)
    output = log.read_text()
    print(f"MLflow killed mid-training: exit {proc.returncode} after {failed_after:.1f} s")
    assert proc.returncode == EXIT_UNAVAILABLE, output[-3000:]
    assert failed_after < KILLED_MID_RUN_BOUND_S, (failed_after, output[-3000:])
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: cannot reach the MLflow tracking server at {team.mlflow_uri}: connection refused"], \
        output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    # besides that line, only the one warning that says where the run's log stayed (it could not be uploaded)
    noise = [line for line in output.splitlines() if re.search(r"\b(WARNING|ERROR)\b", line)
             and "could not upload the run log" not in line]
    assert noise == [], noise
    assert checkpoints(tmp_path), "training stopped before its end: its checkpoints stay for the next attempt"
    assert model_versions(team, name) == [], "no version may be left half-made"

    again_started = time.monotonic()
    again = run(["run", str(cfg)], tmp_path, env, timeout=600)
    again_took = time.monotonic() - again_started
    print(f"the same command again: exit {again.returncode} after {again_took:.1f} s\n{again.stderr}\n{again.stdout}")
    assert again.returncode == EXIT_OK, again.stderr[-3000:]
    (after,) = pipeline_runs(team, name, logical_run=tags(before)["nerflow.logical_run"])   # one run carries it
    assert after["info"]["run_id"] == before["info"]["run_id"]
    assert len(pipeline_runs(team, name)) == 1, "the same command must not open a second MLflow run"
    assert after["info"]["status"] == "FINISHED"
    assert int(tags(after)["nerflow.attempts"]) >= 2
    assert [tags(after)[f"stage.{s}"] for s in ("validate", "tokenize", "train")] == ["reused", "reused", "computed"]
    assert f"MLflow run: {before['info']['run_id']} (reused from cache: validate, tokenize)" in again.stdout, \
        again.stdout
    assert re.search(r"resuming from checkpoint step [1-9]\d*", again.stderr), again.stderr[-3000:]
    (version,) = model_versions(team, name)
    assert version["run_id"] == before["info"]["run_id"] and version["status"] == "READY"


def test_prefect_server_down_says_so_and_how_to_run_without_it(team, env, tmp_path, model_dir):
    name = unique("outage-prefect")
    cfg = write_config(tmp_path, model_dir, name)
    closed = f"http://127.0.0.1:{free_port()}/api"   # nothing listens there
    started = time.monotonic()
    result = run(["run", str(cfg)], tmp_path, {**env, "PREFECT_API_URL": closed}, timeout=300)
    elapsed = time.monotonic() - started
    print(f"Prefect down: exit {result.returncode} after {elapsed:.1f} s\n{result.stderr}")
    one_error(result, EXIT_UNAVAILABLE, rf"^error: cannot reach the Prefect server at {re.escape(closed)}: ")
    assert "unset PREFECT_API_URL" in hint(result), result.stderr[-3000:]
    assert elapsed < PREFECT_DOWN_BOUND_S, (elapsed, result.stderr[-3000:])
    assert model_versions(team, name) == []

    no_server = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    scheduled = run(["schedule", str(cfg), "--interval", "60"], tmp_path, no_server, timeout=120)
    print(f"schedule without a Prefect server: exit {scheduled.returncode}\n{scheduled.stderr}")
    line = one_error(scheduled, EXIT_UNAVAILABLE, r"PREFECT_API_URL")
    assert "make team-up" in line, line
