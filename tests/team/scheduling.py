"""What the schedule tests share: a tiny project on disk, `nerflow` and Prefect workers as real processes, and the
MLflow and Prefect servers read back through their REST APIs (what a dashboard or a script of the team sees)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import build_tiny_model
from tests.integration.corpus import LONG, SHORT, UNSEEN, write_conll

from .conftest import MLFLOW_AUTH, PREFECT_AUTH

NERFLOW = [sys.executable, "-m", "nerflow.flows.cli"]
FLOW = "nerflow-scheduled"


def make_project(root: Path, model_name: str, epochs: int = 4, extra: str = "") -> Path:
    """A checkout-like directory: data/, a tiny local model, and a config with relative data paths (as a team's
    config would be) and no cache_dir (each worker's NERFLOW_CACHE_DIR decides)."""
    data = root / "data"
    data.mkdir(parents=True)
    write_conll(data / "train.txt", ([LONG] + SHORT) * 3)
    write_conll(data / "valid.txt", [LONG] + SHORT[:3] + UNSEEN)
    write_conll(data / "test.txt", [LONG] + SHORT[2:] + UNSEEN[:2])
    texts = [" ".join(w for w, _ in s) for s in [LONG, *SHORT, *UNSEEN]] * 10
    build_tiny_model(root / "model", texts)
    (root / "tiny.yaml").write_text(
        f"experiment: {model_name}\n"
        "data: {dir: data, train: train.txt, validation: valid.txt, test: test.txt}\n"
        f"model: {{name_or_path: {root / 'model'}}}\n"
        f"registry: {{model_name: {model_name}}}\n"
        "tokenize: {max_length: 16, stride: 4}\n"
        f"train: {{epochs: {epochs}, lr: 0.003, batch_size: 4, early_stopping_patience: 0, checkpoint_every: 0, "
        f"log_every: 5}}\n{extra}")
    return root / "tiny.yaml"


def process_env(team_env: dict, root: Path, **extra: str) -> dict[str, str]:
    """Polling every second (Prefect's defaults are 10-15 s), one thread per torch job on 2 cores."""
    return {**team_env, "PREFECT_HOME": str(root / "prefect-home"), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "2",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NERFLOW_CACHE_DIR": str(root / "cache"), **extra}


def nerflow(args: list[str], cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*NERFLOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Background:
    """A long-lived process (`nerflow serve`, `prefect worker start`) in its own session, logging to a file, and
    stopped as a user stops it: SIGINT, then SIGKILL of its whole group if it does not go."""

    def __init__(self, args: list[str], cwd: Path, env: dict, log: Path):
        self.log = log
        with log.open("a") as out:
            self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, timeout: float = 30) -> int:
        self.interrupt()
        return self.wait_stopped(timeout)

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)

    def wait_stopped(self, timeout: float) -> int:
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):   # flow-run children it may have left
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    @staticmethod
    def stop_all(processes: list[Background], timeout: float = 30) -> None:
        """Stop several at once: one grace period for all of them, not one each after the other."""
        for p in processes:
            p.interrupt()
        deadline = time.monotonic() + timeout
        for p in processes:
            p.wait_stopped(max(0.0, deadline - time.monotonic()))

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


def wait_for(predicate, timeout: float, what: str, *watched: Background):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for bg in watched:
            if bg.proc.poll() is not None:
                raise AssertionError(f"{bg.proc.args[:4]} exited ({bg.proc.returncode}) before {what}:\n{bg.tail()}")
        time.sleep(0.5)
    logs = "\n".join(bg.tail() for bg in watched)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


# ----------------------------------------------------------------------------------------------- MLflow REST
def versions(mlflow_uri: str, model: str) -> list[dict]:
    r = httpx.get(f"{mlflow_uri}/api/2.0/mlflow/model-versions/search", auth=MLFLOW_AUTH,
                  params={"filter": f"name='{model}'"})
    r.raise_for_status()
    return sorted(r.json().get("model_versions", []), key=lambda v: int(v["version"]))


def run_info(mlflow_uri: str, run_id: str) -> dict:
    r = httpx.get(f"{mlflow_uri}/api/2.0/mlflow/runs/get", auth=MLFLOW_AUTH, params={"run_id": run_id})
    r.raise_for_status()
    run = r.json()["run"]
    return {"status": run["info"]["status"],
            "metrics": {m["key"]: m["value"] for m in run["data"].get("metrics", [])},
            "tags": {t["key"]: t["value"] for t in run["data"].get("tags", [])}}


def pipeline_runs(mlflow_uri: str, experiment: str) -> list[dict]:
    r = httpx.get(f"{mlflow_uri}/api/2.0/mlflow/experiments/get-by-name", auth=MLFLOW_AUTH,
                  params={"experiment_name": experiment})
    if r.status_code == 404:
        return []
    r.raise_for_status()
    found = httpx.post(f"{mlflow_uri}/api/2.0/mlflow/runs/search", auth=MLFLOW_AUTH,
                       json={"experiment_ids": [r.json()["experiment"]["experiment_id"]], "max_results": 100})
    found.raise_for_status()
    return found.json().get("runs", [])


# ---------------------------------------------------------------------------------------------- Prefect REST
def deployment(api: str, name: str) -> dict | None:
    r = httpx.get(f"{api}/deployments/name/{FLOW}/{name}", auth=PREFECT_AUTH)
    return None if r.status_code == 404 else r.raise_for_status().json()


def flow_runs(api: str, deployment_id: str, states: list[str] | None = None) -> list[dict]:
    body: dict = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC",
                  "limit": 200}
    if states:
        body["flow_runs"] = {"state": {"type": {"any_": states}}}
    r = httpx.post(f"{api}/flow_runs/filter", auth=PREFECT_AUTH, json=body)
    r.raise_for_status()
    return r.json()


def trigger(api: str, name: str) -> str:
    """One run of the deployment now, as a script of the team would start it; its flow-run id."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api,
                                     PREFECT_API_AUTH_STRING: os.environ["PREFECT_API_AUTH_STRING"]}):
        return str(run_deployment(f"{FLOW}/{name}", timeout=0).id)


def flow_run(api: str, flow_run_id: str) -> dict:
    return httpx.get(f"{api}/flow_runs/{flow_run_id}", auth=PREFECT_AUTH).raise_for_status().json()
