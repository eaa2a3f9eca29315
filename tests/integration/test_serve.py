"""`mlflow models serve` of the registered model on 127.0.0.1 answers the same spans as in-process `nerflow predict`,
and a malformed request gets a 4xx. The server runs in its own process group and is always stopped."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nerflow.flows import cli
from nerflow.flows.prefect_server import free_port

MODEL = "tiny-ner"
ALIAS = "champion"          # what production serves: the promote stage made the session model champion
READY_TIMEOUT_S = 90          # ~16 s on 2 cores
SENTENCES = ["Anna Schmidt works for Initech in Paris.",
             "Yesterday in the morning Maria Lopez said that the board of the company Northwind Trading would meet "
             "in New Salem on Monday."]


def request(port: int, body: bytes, path: str = "/invocations", method: str = "POST") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body if method == "POST" else None,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def start_server(model_uri: str, port: int, log_path: Path, tracking_uri: str) -> subprocess.Popen:
    venv_bin = str(Path(sys.executable).parent)       # `--env-manager local` execs uvicorn by name
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log_path.open("w") as log:
        return subprocess.Popen([str(Path(venv_bin) / "mlflow"), "models", "serve", "-m", model_uri,
                                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            if request(port, b"", "/ping", "GET")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"no /ping answer within {READY_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole process group (mlflow -> uvicorn workers), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def test_served_model_answers_the_spans_of_nerflow_predict(pipeline_result, mlflow_store, tmp_path, capsys):
    uri = f"models:/{MODEL}@{ALIAS}"
    port, log_path = free_port(), tmp_path / "serve.log"
    proc = start_server(uri, port, log_path, mlflow_store)
    try:
        capsys.readouterr()
        assert cli.main(["predict", uri, *SENTENCES]) == 0           # meanwhile, in-process
        expected = [json.loads(line)["entities"] for line in capsys.readouterr().out.splitlines()]
        assert all(len(spans) >= 2 for spans in expected)
        wait_ready(proc, port, log_path)

        status, body = request(port, json.dumps({"inputs": SENTENCES}).encode())
        assert status == 200, body
        assert json.loads(body) == {"predictions": expected}
        status, body = request(port, json.dumps({"inputs": [""]}).encode())      # an empty text: no entity
        assert (status, json.loads(body)) == (200, {"predictions": [[]]}), body

        for malformed in (b"{not json", json.dumps({"texts": SENTENCES}).encode()):
            status, body = request(port, malformed)
            assert 400 <= status < 500, (malformed, status, body)
            assert "error_code" in json.loads(body)
    finally:
        stop_server(proc)
    assert proc.poll() is not None
