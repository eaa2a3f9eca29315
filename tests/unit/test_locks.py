"""One process per logical run: a live holder blocks a second run, a dead one's lock is taken over."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nerflow.locks import RunLockedError, held_locks, run_lock


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    return proc.pid


def leave_lock(root: Path, logical_run: str, pid: int, host: str | None = None, keys: dict | None = None) -> Path:
    """The lock file a process leaves behind when it is killed before it can remove it."""
    path = root / "locks" / f"{logical_run}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": time.time(),
                                "keys": keys or {}}))
    return path


def test_a_second_run_of_the_same_logical_run_is_refused_while_the_first_holds_it(tmp_path):
    with run_lock(tmp_path, "run-a", {"train": "k1"}):
        with pytest.raises(RunLockedError, match=f"already running in process {os.getpid()}"):
            with run_lock(tmp_path, "run-a"):
                pass
        with run_lock(tmp_path, "run-b"):                  # another logical run is not blocked
            pass
    with run_lock(tmp_path, "run-a"):                      # released: free again
        pass
    assert held_locks(tmp_path) == []


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(ValueError):
        with run_lock(tmp_path, "run-a"):
            raise ValueError("stage failed")
    with run_lock(tmp_path, "run-a"):
        pass


def test_a_dead_process_lock_is_taken_over_with_a_warning(tmp_path, dead_pid, caplog):
    leave_lock(tmp_path, "run-a", dead_pid, keys={"train": "old"})
    with caplog.at_level(logging.WARNING, logger="nerflow.locks"):
        with run_lock(tmp_path, "run-a", {"train": "new"}):
            (held,) = held_locks(tmp_path)
            assert held["pid"] == os.getpid() and held["keys"] == {"train": "new"}
    assert any("dead run" in r.getMessage() and str(dead_pid) in r.getMessage() for r in caplog.records)
    assert held_locks(tmp_path) == []


def test_a_lock_held_by_another_live_process_is_refused(tmp_path):
    """A real second process holds the lock (flock): this one is refused and told which pid holds it."""
    code = ("import sys, time; from pathlib import Path; from nerflow.locks import run_lock\n"
            "with run_lock(Path(sys.argv[1]), 'run-a'):\n    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"process {proc.pid}"):
            with run_lock(tmp_path, "run-a"):
                pass
        assert [h["pid"] for h in held_locks(tmp_path)] == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
    with run_lock(tmp_path, "run-a"):   # killed: the kernel released its lock, the run can be taken over
        pass


def test_held_locks_lists_only_live_ones(tmp_path, dead_pid):
    leave_lock(tmp_path, "dead-run", dead_pid, keys={"train": "k-dead"})
    with run_lock(tmp_path, "live-run", {"validate": "v1", "train": "k-live"}):
        (held,) = held_locks(tmp_path)
        assert held["logical_run"] == "live-run"
        assert held["keys"] == {"validate": "v1", "train": "k-live"}
        assert held["pid"] == os.getpid()
    assert held_locks(tmp_path) == []
    assert held_locks(tmp_path / "no-cache-yet") == []
