"""Reaping runs whose process is gone, and only those: a live run in another PID namespace with the same host name
(two containers of one pod) stays RUNNING; a dead one is marked KILLED, at once from its own namespace, after its
heartbeat goes stale from another. Real MLflow (a sqlite store), real namespaces (`unshare --pid --fork`, as root).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nerflow.prefect_tasks import liveness

# A pipeline run's process as far as liveness goes: opens a run with its process tags, beats, and lives until its
# stdin closes.
RUN = """
import sys
from mlflow import MlflowClient
from nerflow.prefect_tasks import liveness
client = MlflowClient(sys.argv[1])
run_id = client.create_run(sys.argv[2], tags=liveness.process_tags()).info.run_id
print(run_id, flush=True)
with liveness.heartbeat(client, run_id, every_s=float(sys.argv[3])):
    sys.stdin.readline()
"""
other_namespace = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                     reason="a second PID namespace needs root and unshare(1)")


@pytest.fixture(scope="module")
def template_store(tmp_path_factory) -> tuple[Path, str]:
    """An empty store with one experiment, built once (a new sqlite store's migrations take a second or two)."""
    root = tmp_path_factory.mktemp("liveness-store")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return root / "mlflow.db", client.create_experiment("liveness", artifact_location=(root / "a").as_uri())


@pytest.fixture
def store(template_store, tmp_path) -> tuple[MlflowClient, str]:
    """A copy of the template per test: the reaper scans the whole store, so each test sees only its own runs."""
    db, experiment = template_store
    shutil.copy(db, tmp_path / "mlflow.db")
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), experiment


def start_run(client: MlflowClient, experiment: str, *, namespace: bool, beat_s: float = 0.2):
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if namespace else []
    proc = subprocess.Popen([*prefix, sys.executable, "-c", RUN, client.tracking_uri, experiment, str(beat_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()
    assert run_id, f"the run's process said nothing (exit {proc.poll()})"
    return proc, run_id


def end(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def tags(client: MlflowClient, run_id: str) -> dict[str, str]:
    return client.get_run(run_id).data.tags


def wait_for_beat(client: MlflowClient, run_id: str, timeout: float = 30) -> None:
    """Until the process has beaten at least once after its first record (polling, with a deadline)."""
    first, deadline = tags(client, run_id)[liveness.HEARTBEAT_TAG], time.monotonic() + timeout
    while tags(client, run_id)[liveness.HEARTBEAT_TAG] == first:
        assert time.monotonic() < deadline, f"no heartbeat within {timeout} s"
        time.sleep(0.05)


@other_namespace
def test_a_live_run_in_another_pid_namespace_stays_running(store):
    """Its pid in the reaper's namespace is missing or someone else (pid 1 there is the container's init): judged by
    the heartbeat instead, it is alive. The old reaper marked it KILLED."""
    client, experiment = store
    proc, run_id = start_run(client, experiment, namespace=True)
    try:
        assert tags(client, run_id)[liveness.NAMESPACE_TAG] != liveness.namespace()
        wait_for_beat(client, run_id)
        assert liveness.reap_dead_runs(client) == []
        assert liveness.reap_dead_runs(client, stale_s=30) == []
        assert client.get_run(run_id).info.status == "RUNNING"
    finally:
        end(proc)


@other_namespace
def test_a_dead_run_in_another_pid_namespace_is_reaped_once_its_heartbeat_is_stale(store):
    client, experiment = store
    proc, run_id = start_run(client, experiment, namespace=True)
    end(proc)
    beat = float(tags(client, run_id)[liveness.HEARTBEAT_TAG])
    assert liveness.reap_dead_runs(client, stale_s=300) == []    # as recent as its last beat: it may be alive
    assert client.get_run(run_id).info.status == "RUNNING"
    # stale: a threshold the beat's age has passed (no waiting for the default)
    assert liveness.reap_dead_runs(client, stale_s=max(time.time() - beat - 0.01, 0.001)) == [run_id]
    assert client.get_run(run_id).info.status == "KILLED"
    assert "sent no heartbeat" in tags(client, run_id)["error"]


def test_in_its_own_namespace_a_dead_run_is_reaped_at_once_and_a_live_one_kept(store):
    client, experiment = store
    live = client.create_run(experiment, tags=liveness.process_tags()).info.run_id   # this process: alive
    proc, dead = start_run(client, experiment, namespace=False)
    end(proc)
    assert liveness.reap_dead_runs(client) == [dead]   # its heartbeat is fresh: the pid decides, not the beat
    assert client.get_run(dead).info.status == "KILLED"
    assert "ended without closing the run" in tags(client, dead)["error"]
    assert client.get_run(live).info.status == "RUNNING"


def test_a_pid_reused_by_another_process_is_not_the_run(store):
    """The recorded pid runs, but started at another tick: another process has the number now."""
    client, experiment = store
    recorded = liveness.process_tags() | {liveness.START_TICK_TAG: "1"}
    run_id = client.create_run(experiment, tags=recorded).info.run_id
    assert liveness.reap_dead_runs(client) == [run_id]


def test_a_bad_threshold_is_one_error_naming_the_variable(store, monkeypatch):
    from nerflow.config import ConfigError

    monkeypatch.setenv(liveness.STALE_ENV, "soon")
    with pytest.raises(ConfigError, match=f"{liveness.STALE_ENV}='soon': must be a positive number"):
        liveness.reap_dead_runs(store[0])
