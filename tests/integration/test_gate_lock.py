"""A hung gate scoring holds no promotion lock: the gate scores before it takes the lock, so while one process is
stuck scoring (fault `gate.scoring:hang`), another moves the same alias at once, on a real sqlite registry; and with
promote.score_timeout_s the hung gate itself ends with one error, having written nothing."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

from mlflow import MlflowClient

from nerflow import faults

GATE = """
import sys
from pathlib import Path
from mlflow import MlflowClient
from nerflow import promotion, task_types
from nerflow.prefect_tasks import champion
champion.gate(MlflowClient(), sys.argv[1], "2", "champion", promotion.GateRules(0.0, 0.0, 0, 1.0),
              Path("unused.jsonl"), [], data_passed=True, auto=True, actor="gate", evidence={},
              task=task_types.canonical(None), score_timeout_s=float(sys.argv[2]))
"""


def test_a_gate_hung_in_scoring_blocks_no_other_promotion(tmp_path, monkeypatch):
    uri, name = f"sqlite:///{tmp_path / 'mlflow.db'}", "hung-gate"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)   # the lock is the store's flock, shared by both processes
    client = MlflowClient(uri)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, str(tmp_path / "model"))
    gate = subprocess.Popen([sys.executable, "-c", GATE, name, "0"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, faults.ENV: "gate.scoring:hang"})
    try:
        said = []
        for line in gate.stderr:   # the barrier: the gate is inside its scoring step now, and stays there (a gate
            said.append(line)      # that ends instead closes stderr: the loop ends)
            if "hanging at gate.scoring" in line:
                break
        assert gate.poll() is None and "hanging at gate.scoring" in said[-1], "".join(said)

        from nerflow.prefect_tasks import champion

        done = threading.Event()
        mover = threading.Thread(target=lambda: (champion.force(client, name, "1", "champion", "person",
                                                                "while the gate scores"), done.set()), daemon=True)
        mover.start()
        assert done.wait(60), "a promotion waited for the lock a hung gate holds"
        assert champion.alias_version(client, name, "champion") == "1"
        assert [e.actor for e in champion.read_history(client, name, "champion")] == ["person"]
    finally:
        gate.kill()
        gate.wait()


def test_a_gate_hung_in_scoring_stops_at_its_timeout_having_written_nothing(tmp_path, monkeypatch):
    from nerflow.flows import errors
    from nerflow.promotion import ScoringTimeout

    uri, name = f"sqlite:///{tmp_path / 'mlflow.db'}", "timed-gate"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    client = MlflowClient(uri)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, str(tmp_path / "model"))
    gate = subprocess.run([sys.executable, "-c", GATE, name, "2"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, faults.ENV: "gate.scoring:hang"})
    assert gate.returncode != 0 and "hanging at gate.scoring" in gate.stderr, gate.stderr
    last = gate.stderr.strip().splitlines()[-1]
    assert last.startswith("nerflow.promotion.ScoringTimeout: the gate's scoring of timed-gate version 2 took "
                           "longer than promote.score_timeout_s (2 s)"), gate.stderr
    assert "nerflow.promotion" not in client.get_model_version(name, "2").tags   # nothing decided, nothing written
    assert client.get_registered_model(name).aliases == {}
    assert errors.classify(ScoringTimeout("x")) == errors.EXIT_UNAVAILABLE   # exit 3, and no retry by Prefect
    from nerflow.prefect_tasks import tracking

    assert not tracking.is_transient(ScoringTimeout(last))
