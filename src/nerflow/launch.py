"""Run a training job in this process, or data-parallel in several through torchrun (DDP), one JSON-able job either way.

A job is a dict: the task type, where its inputs are (model, validated splits, windows), the train settings, the
seed and the output folder. With `train.devices` x `train.nodes` = 1 it runs here. Otherwise this machine starts
`torchrun` (one process per device; `--standalone` on one machine, node 0 of a static rendezvous at
`train.master_addr:master_port` across machines) with `python -m nerflow.launch JOB`, and every other machine
joins with the same command and its `node_rank` (`nerflow train-node`, docs/distributed.md). The output folder
must be shared by all nodes: the job, the checkpoints, the metric points and the result travel through it.

Only rank 0 reports: its metric points go to `metrics.jsonl` in the output folder, which this process forwards
to `on_metrics` as they arrive; its result goes to `result.json`. A stop (Ctrl-C or SIGTERM here) is relayed as a
`STOP` file that every rank reads at its next exchange; they checkpoint at the same step and stop together.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from nerflow.checkpoints import MetricsCallback
from nerflow.progress import TrainingInterrupted, stop_requests

log = logging.getLogger(__name__)
JOB_FILE, RESULT_FILE, METRICS_FILE, STOP_FILE = "job.json", "result.json", "metrics.jsonl", "STOP"
EXIT_INTERRUPTED = 3


class LaunchError(RuntimeError):
    """The training processes failed; the message carries the first rank's error."""


def world_size(devices: int | str, nodes: int) -> int:
    return devices_per_node(devices) * nodes


def devices_per_node(devices: int | str) -> int:
    if devices == "auto":
        import torch

        return max(torch.cuda.device_count(), 1)
    return int(devices)


def run_job(job: dict, on_metrics: MetricsCallback | None = None, should_stop=None):
    """Train `job` in this process (or as one rank of a torchrun group): the task type's fine-tuning, or the
    "module:function" a job names as its `entry` (the distill stage's student: nerflow.distill). Named, not
    imported here, so that fine-tuning's code identity does not hold the student's code."""
    import importlib

    from nerflow import task_types

    if "entry" in job:
        module, _, function = job["entry"].partition(":")
        return getattr(importlib.import_module(module), function)(job, on_metrics, should_stop)
    return task_types.entry(job["task"], "train").train_job(job, on_metrics, should_stop)


def train(job: dict, on_metrics: MetricsCallback | None = None) -> dict:
    """Train in this process or through torchrun, as `job["train"]` asks; the result as a dict (TrainResult's
    fields, `best_dir` as a string). Raises `nerflow.progress.TrainingInterrupted` when stopped by a signal."""
    cfg = job["train"]
    if world_size(cfg["devices"], cfg["nodes"]) == 1:
        result = asdict(run_job(job, on_metrics))
        return {**result, "best_dir": str(result["best_dir"])}
    return torchrun(job, node_rank=0, on_metrics=on_metrics)


def torchrun_command(job_path: Path, devices: int, nodes: int, node_rank: int, master_addr: str | None,
                     master_port: int) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={devices}"]
    if nodes == 1:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={nodes}", f"--node-rank={node_rank}", f"--master-addr={master_addr}",
                f"--master-port={master_port}"]
    return [*cmd, "-m", "nerflow.launch", str(job_path)]


def torchrun(job: dict, node_rank: int = 0, on_metrics: MetricsCallback | None = None) -> dict:
    """Start this node's share of the processes and wait for them. Node 0 writes the job; the others read it."""
    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    job_path = out / JOB_FILE
    if node_rank == 0:
        for name in (STOP_FILE, RESULT_FILE):
            (out / name).unlink(missing_ok=True)
        tmp = job_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job, indent=1))
        tmp.replace(job_path)
    cfg = job["train"]
    devices = devices_per_node(cfg["devices"])
    cmd = torchrun_command(job_path, devices, cfg["nodes"], node_rank, cfg["master_addr"], cfg["master_port"])
    threads = max(1, (os.cpu_count() or 1) // devices)
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.get("num_threads") or threads)}
    log.info("starting %d training processes on this node (%d in all): %s", devices, devices * cfg["nodes"],
             " ".join(cmd[1:]))
    forward = MetricsForwarder(out / METRICS_FILE, on_metrics) if node_rank == 0 and on_metrics else None
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    try:
        with stop_requests() as stop:
            while proc.poll() is None:
                if stop.requested and not (out / STOP_FILE).exists():
                    (out / STOP_FILE).write_text(stop.signal)   # every rank stops at its next exchange
                if forward:
                    forward.poll()
                time.sleep(0.5)
    except BaseException:
        _kill(proc)
        raise
    if forward:
        forward.poll()
    result = json.loads((out / RESULT_FILE).read_text()) if (out / RESULT_FILE).is_file() else None
    if result and result.get("interrupted"):
        raise TrainingInterrupted(result["interrupted"])
    if proc.returncode != 0 or result is None:
        error = result.get("error") if result else None
        raise LaunchError(f"torchrun exited with {proc.returncode}" + (f": {error}" if error else
                                                                        " (its output above says why)"))
    return result


class MetricsForwarder:
    """Hands rank 0's metric points (one JSON line each) to `on_metrics` as they are appended. The whole file is
    sent on every attempt: the tracker stores a point it already has (same step, value and time) once."""

    def __init__(self, path: Path, on_metrics: MetricsCallback):
        self.path, self.on_metrics, self.offset = path, on_metrics, 0

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]   # a line being written is read next time
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            step, values, timestamp_ms = json.loads(line)
            self.on_metrics(step, values, timestamp_ms)


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:   # in the child between fork and exec: killed when its parent dies (Linux)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def worker(job_path: Path) -> int:
    """One torchrun process: join the group, train, and (rank 0) leave the result where node 0 reads it."""
    from nerflow import distributed

    _die_with_parent()   # torchrun starts its workers in their own sessions: without this they outlive it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank %(process)d %(levelname)s %(message)s")
    job = json.loads(job_path.read_text())
    out = Path(job["out_dir"])
    world = distributed.init()
    metrics = out / METRICS_FILE

    def on_metrics(step: int, values: dict, timestamp_ms: int) -> None:   # rank 0 only (fit decides)
        with metrics.open("a") as f:
            f.write(json.dumps([step, values, timestamp_ms]) + "\n")
            f.flush()
            os.fsync(f.fileno())

    outcome: dict = {}
    try:
        result = run_job(job, on_metrics, should_stop=lambda: (out / STOP_FILE).exists())
        (out / f"weights-rank{world.rank}.sha256").write_text(result.weights_sha256)
        outcome = {**asdict(result), "best_dir": str(result.best_dir)}
        code = 0
    except TrainingInterrupted as e:
        outcome, code = {"interrupted": str(e)}, EXIT_INTERRUPTED
    except BaseException as e:
        outcome, code = {"error": f"rank {world.rank}: {type(e).__name__}: {e}"}, 1
        raise
    finally:
        if world.main and outcome:
            tmp = out / (RESULT_FILE + ".tmp")
            tmp.write_text(json.dumps(outcome, indent=1))
            tmp.replace(out / RESULT_FILE)
        distributed.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1])))
