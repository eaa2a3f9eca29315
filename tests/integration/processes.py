"""`nerflow` as a user runs it: a real subprocess in its own process group, signalled as a terminal does."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

NERFLOW = [sys.executable, "-m", "nerflow.flows.cli"]


def nerflow_env(mlflow_store: str, prefect_home: Path | None = None, **extra: str) -> dict[str, str]:
    """The session's MLflow store; with `prefect_home`, no PREFECT_API_URL: the command starts (and must stop) its
    own temporary Prefect server; without, the session's Prefect test server."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           **extra}
    if prefect_home is not None:
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_HOME"] = str(prefect_home)
    else:
        from prefect.settings import PREFECT_API_URL

        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return env


def start(args: list[str], cwd: Path, env: dict[str, str], log_name: str = "nerflow.log"
          ) -> tuple[subprocess.Popen, Path]:
    log_path = cwd / log_name
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([*NERFLOW, *args], cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, log_path


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*NERFLOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) before {what}:\n{log.read_text()[-4000:] if log else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:] if log else ''}")


def temporary_servers(prefect_home: Path) -> list[dict]:
    """The temporary Prefect servers nerflow recorded as started and not yet stopped."""
    return [json.loads(p.read_text()) for p in (prefect_home / "servers").glob("*.json")]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def process_alive(pid: int) -> bool:
    """Alive and not a zombie (a killed parent's child may linger unreaped in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def one_error(result, code: int, pattern: str) -> str:
    """The command's single error line, after checking that nothing else on stderr is a warning, error or traceback
    and that at most one hint follows."""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    noise = [line for line in lines if re.search(r"\b(WARNING|ERROR|Warning|Traceback)\b", line)
             and not line.startswith(("error: ", "hint: "))]
    assert result.returncode == code, result.stderr[-3000:]
    assert len(errors) == 1 and noise == [], result.stderr[-3000:]
    assert len([line for line in lines if line.startswith("hint: ")]) <= 1
    assert re.search(pattern, errors[0]), errors[0]
    # ... and said once: no log line repeats it (Prefect's `Finished in state Failed('...')` would, at INFO)
    said = errors[0].removeprefix("error: ")[:80]
    repeats = [line for line in lines if said in line and not line.startswith("error: ")]
    assert repeats == [], result.stderr[-3000:]
    return errors[0]
