"""A hung gate scoring holds no promotion lock: the gate scores before it takes the lock, so while one process is
stuck scoring (fault `gate.scoring:hang`), another moves the same alias at once, on a real sqlite registry."""
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
              task=task_types.canonical(None))
"""


def test_a_gate_hung_in_scoring_blocks_no_other_promotion(tmp_path, monkeypatch):
    uri, name = f"sqlite:///{tmp_path / 'mlflow.db'}", "hung-gate"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)   # the lock is the store's flock, shared by both processes
    client = MlflowClient(uri)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, str(tmp_path / "model"))
    gate = subprocess.Popen([sys.executable, "-c", GATE, name], stderr=subprocess.PIPE, text=True,
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
