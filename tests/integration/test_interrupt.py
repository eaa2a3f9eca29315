"""Ctrl-C and kill -9 as a terminal delivers them: `nerflow run` in its own process group, with its own temporary
Prefect server (no PREFECT_API_URL), signalled with os.killpg.

SIGINT during training: exit 130 within INTERRUPT_BOUND_S, checkpoint written, MLflow run KILLED, no version, no
server left, and the same command resumes from the checkpoint and finishes. SIGKILL: the next command (`nerflow
runs`) shows the run KILLED in the stage it died in (train) with the command that continues it, and no Prefect
server is left listening."""
from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from nerflow import faults
from nerflow.config import resolved_dict

from .corpus import LONG, SHORT, tiny_config, write_conll
from .processes import listening, nerflow_env, process_alive, run, start, temporary_servers, wait_for

# From the signal to the exit: the step in progress, the checkpoint, marking the MLflow run KILLED and the Prefect
# flow run Cancelled, stopping the temporary server (up to 10 s if it does not stop at SIGTERM). Measured: ~2-5 s.
INTERRUPT_BOUND_S = 20


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


def write_config(tmp_path: Path, corpus_model_dir: Path, name: str) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_conll(corpus / "train.txt", ([LONG] + SHORT) * 20)   # 35 steps of 4 per epoch
    write_conll(corpus / "valid.txt", SHORT)
    write_conll(corpus / "test.txt", SHORT)
    cfg = tiny_config(tmp_path, corpus, corpus_model_dir, tmp_path / "cache", f"experiment=nerflow-{name}",
                      f"registry.model_name={name}", "train.epochs=12", "train.batch_size=4",
                      "train.checkpoint_every=10", "train.num_threads=1", "train.device=cpu")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(resolved_dict(cfg)))
    return path


def checkpoints(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "train").glob("*.work/checkpoints/step-*"))


def run_until_training(tmp_path: Path, corpus_model_dir: Path, mlflow_store: str, prefect_home: Path, name: str,
                       hold: str):
    """`nerflow run` of a fresh config in its own process group, returned once training is under way, held just
    after its first checkpoint by the fault switch (`hold`: `pause` until a signal, or `hang`), so the signal the test
    sends finds it training however fast the machine: (config path, environment without the switch, process, log
    path, the temporary server it started)."""
    cfg = write_config(tmp_path, corpus_model_dir, name)
    env = nerflow_env(mlflow_store, prefect_home)
    proc, log = start(["run", str(cfg)], tmp_path, {**env, faults.ENV: f"checkpoint.renamed:{hold}"})
    verb = {"pause": "pausing", "hang": "hanging"}[hold]
    return cfg, env, proc, log, started_training(tmp_path, prefect_home, proc, log, f"{verb} at checkpoint.renamed")


def started_training(tmp_path: Path, prefect_home: Path, proc, log: Path, held: str) -> dict:
    """Waits for a first checkpoint and the line saying the command is held there; returns the temporary server the
    command started."""
    wait_for(lambda: checkpoints(tmp_path) and held in log.read_text(), 180, "a first checkpoint", proc, log)
    (server,) = wait_for(lambda: temporary_servers(prefect_home), 10, "the temporary server's record", proc, log)
    assert listening(server["port"]) and server["owner"] == proc.pid
    return server


def only_run(experiment: str):
    client = MlflowClient()
    (found,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return found


def test_ctrl_c_during_training_stops_cleanly_and_the_same_command_resumes(tmp_path, corpus_model_dir, mlflow_store,
                                                                           prefect_home):
    cfg, env, proc, log, server = run_until_training(tmp_path, corpus_model_dir, mlflow_store, prefect_home,
                                                     "interrupt-sigint", hold="pause")

    os.killpg(proc.pid, signal.SIGINT)                 # Ctrl-C: the whole foreground group
    signalled = time.monotonic()
    proc.wait(timeout=120)
    elapsed = time.monotonic() - signalled
    output = log.read_text()
    assert proc.returncode == 130, output[-3000:]
    assert elapsed < INTERRUPT_BOUND_S, (elapsed, output[-3000:])
    assert "Traceback" not in output and "Error logging to API" not in output, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith("interrupted: SIGINT: stopped at step") and f"nerflow run {cfg}" in last, last
    stopped_at = int(re.search(r"stopped at step (\d+)", last).group(1))

    run_ = only_run("nerflow-interrupt-sigint")
    assert run_.info.status == "KILLED"
    assert MlflowClient().search_model_versions("name='interrupt-sigint'") == []
    assert not process_alive(server["pid"]) and not listening(server["port"])
    assert temporary_servers(prefect_home) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)                         # nothing of the group is left

    again = run(["run", str(cfg)], tmp_path, env)      # the same command continues it
    assert again.returncode == 0, again.stderr[-3000:]
    # the temporary server has no UI and is gone when the command ends: no Prefect link; the summary's MLflow run
    assert "View at" not in output + again.stdout + again.stderr, (output + again.stderr)[-3000:]
    assert run_.info.run_id in again.stdout, again.stdout
    resumed = re.search(r"resuming from checkpoint step (\d+)", again.stderr)
    assert resumed and int(resumed.group(1)) == stopped_at > 0, again.stderr[-3000:]
    finished = MlflowClient().get_run(run_.info.run_id)
    assert (finished.info.status, finished.data.tags["nerflow.attempts"]) == ("FINISHED", "2")
    assert len(MlflowClient().search_model_versions("name='interrupt-sigint'")) == 1
    assert temporary_servers(prefect_home) == []


def test_kill_9_leaves_no_server_and_the_next_command_shows_the_run_killed(tmp_path, corpus_model_dir, mlflow_store,
                                                                           prefect_home):
    cfg, env, proc, log, server = run_until_training(tmp_path, corpus_model_dir, mlflow_store, prefect_home,
                                                     "interrupt-sigkill", hold="hang")

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert only_run("nerflow-interrupt-sigkill").info.status == "RUNNING"   # nothing could mark it

    listed = run(["runs", "--json"], tmp_path, env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    (row,) = [r for r in json.loads(listed.stdout) if r["experiment"] == "nerflow-interrupt-sigkill"]
    assert row["status"] == "KILLED"
    assert row["continue"] == f"nerflow rerun {row['run_id']}" and row["superseded_by"] is None
    # the stage it died in, although no stage could say so (the process had no chance to tag it)
    assert row["failed_stage"] == "train", row
    assert row["stages"] == {"validate": "computed", "tokenize": "computed", "train": "killed", "evaluate": None,
                             "register": None, "promote": None}, row
    assert only_run("nerflow-interrupt-sigkill").info.status == "KILLED"
    wait_for(lambda: not process_alive(server["pid"]), 10, "the orphaned server to stop")
    assert not listening(server["port"])
    assert temporary_servers(prefect_home) == []


# Each flow that deployments run, called in-process with parameters it refuses, so that its body ends at once
FLOW_RUN_SCRIPT = r'''
import os, signal, sys, time, uuid
os.environ["PREFECT__FLOW_RUN_ID"] = str(uuid.uuid4())   # what a runner or worker gives a flow-run process
from nerflow.flows.monitor_flow import monitor_drift
from nerflow.flows.promote_flow import promote_accepted
from nerflow.flows.rerun import rerun_pipeline
from nerflow.flows.scheduled import scheduled_pipeline
from nerflow.flows.tune_flow import tune

calls = {"scheduled": lambda: scheduled_pipeline("missing.yaml"), "rerun": lambda: rerun_pipeline("no-such-run"),
         "monitor": lambda: monitor_drift("models:/no-such-model@champion", "missing.txt"),
         "promote": lambda: promote_accepted("bad name!", "1"), "tune": lambda: tune("missing.yaml")}
for name, call in calls.items():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:                      # while the body may still run, Ctrl-C interrupts, as before
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        print(f"{name}: SIGINT before the body was not raised", flush=True)
    except KeyboardInterrupt:
        pass
    try:
        call()
    except Exception:
        pass                  # refused: the body ended
    os.kill(os.getpid(), signal.SIGINT)   # serve's Ctrl-C reaching the process group as the run ends
    time.sleep(0.2)
    print(f"{name}: SIGINT after the body ignored", flush=True)
import atexit
atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))   # and at the interpreter's exit (the seen case)
'''


def test_a_ctrl_c_reaching_a_flow_run_process_after_its_body_ended_prints_no_traceback(tmp_path, mlflow_store):
    """`nerflow serve` and workers start flow-run processes in their own process group, so the Ctrl-C that stops
    serve reaches a run that has just ended too; it printed a KeyboardInterrupt traceback from an exit handler into
    serve's output (seen in tests/team/test_schedules.py). Every flow a deployment runs now ignores SIGINT from the
    end of its body on, in such a process only; before the end, SIGINT still interrupts."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FLOW_RUN_SCRIPT], cwd=tmp_path, env=nerflow_env(mlflow_store),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    for name in ("scheduled", "rerun", "monitor", "promote", "tune"):
        assert f"{name}: SIGINT after the body ignored" in done.stdout, output[-4000:]
    assert "before the body was not raised" not in done.stdout, output[-4000:]
    assert "KeyboardInterrupt" not in output and "Traceback" not in output, output[-4000:]
