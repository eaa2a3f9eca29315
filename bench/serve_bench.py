"""Latency and throughput of a served nerflow model: `mlflow models serve` on 127.0.0.1 (a free port), a bounded
number of requests at each concurrency level, what a malformed request gets; the server is stopped at the end.

    python bench/serve_bench.py models:/nerflow-quickstart@champion --requests 200 --concurrency 1 8 \
        --output bench/out/serve.json

One request = one sentence (`{"inputs": [text]}`), cycled over a fixed set of sentences (one longer than the
quickstart's 48-sub-token window, so windowing is measured too). Requests/s is completed requests over the wall time
of that level; p50/p99 are per-request latencies. Threads + http.client: no dependency beyond the venv. The
tracking store is MLFLOW_TRACKING_URI (or --tracking-uri); the venv's bin goes on PATH (`--env-manager local` execs
uvicorn by name).
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SENTENCES = [
    "Maria Lopez visited Berlin on Monday.",
    "Anna Schmidt works for Initech in Paris.",
    "John Smith said that Globex Corporation would open an office in New Salem next spring.",
    "Yesterday in the morning Maria Lopez said that the board of the company Northwind Trading would meet in New "
    "Salem on Monday, after the shareholders of Acme Corporation and Initech had asked Pedro Alvarez and Anna "
    "Schmidt to present the Vortex 3000 to the press in Madrid, Paris and Springfield before the end of the month.",
]
MALFORMED = {"not JSON": b"{not json", "no inputs field": b'{"texts": ["Maria Lopez visited Berlin."]}',
             "inputs not strings": b'{"inputs": [[1, 2, 3]]}'}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: bytes, path: str = "/invocations", method: str = "POST", timeout: float = 60
         ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body if method == "POST" else None,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def start(model_uri: str, port: int, log_path: Path, tracking_uri: str | None, workers: int) -> subprocess.Popen:
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        return subprocess.Popen([str(venv_bin / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
                                 "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if post(port, b"", "/ping", "GET", timeout=2)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"no /ping answer within {timeout} s:\n{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def level(port: int, n_requests: int, clients: int) -> dict:
    """`n_requests` requests shared by `clients` threads, each sending its next one as soon as the last returns."""
    bodies = [json.dumps({"inputs": [s]}).encode() for s in SENTENCES]
    latencies: list[float] = []
    failures: list[str] = []
    counter = iter(range(n_requests))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                status, body = post(port, bodies[i % len(bodies)])
                ok = status == 200 and "predictions" in json.loads(body)
            except (OSError, ValueError) as e:
                status, ok, body = 0, False, str(e).encode()
            elapsed = time.perf_counter() - t0
            with lock:
                (latencies.append(elapsed) if ok else failures.append(f"{status}: {body[:200]!r}"))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": n_requests, "ok": len(latencies), "failed": len(failures),
            "wall_s": round(wall, 3), "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(1000 * percentile(latencies, 50), 1) if latencies else None,
            "p99_ms": round(1000 * percentile(latencies, 99), 1) if latencies else None,
            "max_ms": round(1000 * latencies[-1], 1) if latencies else None, "failures": failures[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_uri", help="e.g. models:/nerflow-quickstart@champion")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level (200)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="concurrent clients (1 8)")
    parser.add_argument("--warmup", type=int, default=10, help="requests sent before measuring (10)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (mlflow's -w; 1)")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI")
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument("--output", type=Path, default=Path("bench/out/serve_bench.json"))
    args = parser.parse_args(argv)

    port = free_port()
    log_path = args.output.with_suffix(".server.log")
    proc = start(args.model_uri, port, log_path, args.tracking_uri, args.workers)
    try:
        ready_s = wait_ready(proc, port, log_path, args.ready_timeout)
        print(f"server ready in {ready_s:.1f} s on 127.0.0.1:{port}", file=sys.stderr)
        status, body = post(port, json.dumps({"inputs": [SENTENCES[-1]]}).encode())
        example = json.loads(body)
        for _ in range(args.warmup):
            post(port, json.dumps({"inputs": [SENTENCES[0]]}).encode())
        levels = []
        for clients in args.concurrency:
            levels.append(level(port, args.requests, clients))
            print(json.dumps({k: v for k, v in levels[-1].items() if k != "failures"}), file=sys.stderr)
        malformed = {}
        for name, payload in MALFORMED.items():
            status, body = post(port, payload)
            text = body.decode("utf-8", "replace")
            try:
                answer = json.loads(text)
                answer = answer.get("error_code", answer) if isinstance(answer, dict) else answer
            except ValueError:
                answer = text[:200]
            malformed[name] = {"status": status, "answer": answer}
    finally:
        stop(proc)
    result = {"model_uri": args.model_uri, "date": datetime.date.today().isoformat(),
              "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}",
              "server": f"mlflow models serve --env-manager local -w {args.workers}", "ready_s": round(ready_s, 1),
              "sentence_words": [len(s.split()) for s in SENTENCES], "levels": levels, "malformed": malformed,
              "example_answer": example, "server_stopped": proc.poll() is not None}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if all(lv["failed"] == 0 for lv in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
