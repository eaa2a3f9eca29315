"""One process per logical run: a live holder blocks a second run, a dead one's lock is taken over."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import threading
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


# ------------------------------------------------------------------------------------------------ stage-key locks
HOLDER = """import sys, time
from pathlib import Path
from nerflow import cache
from nerflow.locks import stage_lock
root = Path(sys.argv[1])
with stage_lock(root, "train", "k1", "run-of-the-other-process"):
    print("held", flush=True)
    if sys.stdin.readline().strip() == "complete":
        with cache.stage_output(root, "train", "k1") as out:
            (out / "model.bin").write_text("weights")
"""


@pytest.fixture
def holder(tmp_path):
    """Another live process holding the stage lock of (train, k1); tell it 'complete' or 'quit' on stdin."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def release_later(proc, answer: str, after_s: float = 0.5) -> None:
    import threading

    def go():
        time.sleep(after_s)
        proc.stdin.write(answer + "\n")
        proc.stdin.flush()

    threading.Thread(target=go, daemon=True).start()


def test_a_stage_key_held_by_another_process_is_waited_for_with_one_line(tmp_path, holder, caplog):
    from nerflow import cache
    from nerflow.locks import stage_lock

    (held,) = held_locks(tmp_path)     # what cache pruning sees: the key being computed is protected
    assert held["pid"] == holder.pid and held["keys"] == {"train": "k1"}
    assert held["logical_run"] == "run-of-the-other-process"
    release_later(holder, "complete")
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="nerflow.locks"):
        with stage_lock(tmp_path, "train", "k1", "my-run", poll_s=0.05) as waited:
            assert time.monotonic() - started >= 0.4                      # it really waited for the release
            assert waited["pid"] == holder.pid
            assert cache.lookup(tmp_path, "train", "k1") is not None      # what the caller reuses
            (mine,) = held_locks(tmp_path)
            assert mine["pid"] == os.getpid() and mine["logical_run"] == "my-run"
    (line,) = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert line == (f"train: waiting for process {holder.pid} on {socket.gethostname()} "
                    "(run run-of-the-o) which is computing key k1")
    assert held_locks(tmp_path) == []


def test_a_free_stage_key_is_not_waited_for_and_a_killed_holder_frees_it(tmp_path, holder):
    from nerflow.locks import stage_lock

    with stage_lock(tmp_path, "train", "other-key") as waited:          # another key: no wait
        assert waited is None
    holder.kill()
    holder.wait()
    with stage_lock(tmp_path, "train", "k1", poll_s=0.05) as waited:    # the kernel released the dead one's lock
        assert waited is None


def stage_context(root: Path):
    """What compute_once reads of a run: where the cache is and which logical run computes."""
    from types import SimpleNamespace

    return SimpleNamespace(cfg=SimpleNamespace(cache_dir=root), plan=SimpleNamespace(logical_run="my-logical-run"),
                           run_id="run-id")


def test_a_stage_reuses_what_a_concurrent_run_computed_while_it_waited(tmp_path, holder, caplog):
    from types import SimpleNamespace

    from nerflow.plan import StagePlan
    from nerflow.prefect_tasks.stage import compute_once

    step = StagePlan("train", "k1", {}, tmp_path / "train" / "k1", complete=False)
    computed = []
    adapter = SimpleNamespace(compute=lambda ctx, step, upstream, out: computed.append(out))
    release_later(holder, "complete")
    with caplog.at_level(logging.INFO):
        entry, reused = compute_once(stage_context(tmp_path), adapter, step, {})
    assert computed == [] and reused is True
    assert f"train: reusing {entry}, computed by a concurrent run" in caplog.text


def test_a_stage_computes_when_the_holder_gave_up(tmp_path, holder):
    from types import SimpleNamespace

    from nerflow import cache
    from nerflow.plan import StagePlan
    from nerflow.prefect_tasks.stage import compute_once

    step = StagePlan("train", "k1", {}, tmp_path / "train" / "k1", complete=False)
    adapter = SimpleNamespace(compute=lambda ctx, step, upstream, out: (out / "model.bin").write_text("mine"))
    release_later(holder, "quit")                   # released without completing (failed, or stopped)
    entry, reused = compute_once(stage_context(tmp_path), adapter, step, {})
    assert reused is False and entry == cache.lookup(tmp_path, "train", "k1")
    assert (entry / "model.bin").read_text() == "mine"


class PausingFcntl:
    """nerflow.locks's view of the fcntl module: in the `reader` thread, the first lock call on a lock file returns
    and then waits until the writer thread has tried its run lock. So the reader is in the middle of testing the lock
    (holding whatever that test takes) exactly while the writer starts: the overlap cache pruning had with a run's
    start, forced instead of hit by chance."""

    def __init__(self, reader_in: threading.Event, writer_done: threading.Event):
        self.reader_in, self.writer_done, self.reader = reader_in, writer_done, None

    def __getattr__(self, name):
        return getattr(fcntl, name)

    def _after(self, result):
        if threading.current_thread() is self.reader and not self.reader_in.is_set():
            self.reader_in.set()
            assert self.writer_done.wait(timeout=30), "the writer never tried its lock"
        return result

    def flock(self, *args):
        return self._after(fcntl.flock(*args))

    def fcntl(self, *args):
        return self._after(fcntl.fcntl(*args))


def test_a_reader_of_the_locks_never_makes_a_starting_run_fail(tmp_path, monkeypatch):
    """`nerflow cache prune` (held_locks) while a run starts (run_lock): the run gets its lock. With a shared flock
    as the test, the reader held the lock for an instant and the run was refused as "already running in process
    None ... 1970"."""
    import nerflow.locks

    with run_lock(tmp_path, "run-a"):   # the lock file exists, as after any earlier run
        pass
    reader_in, writer_done = threading.Event(), threading.Event()
    pausing = PausingFcntl(reader_in, writer_done)
    monkeypatch.setattr(nerflow.locks, "fcntl", pausing)
    seen: list = []
    reader = threading.Thread(target=lambda: seen.append(held_locks(tmp_path)))
    pausing.reader = reader
    reader.start()
    try:
        assert reader_in.wait(timeout=30), "held_locks made no lock call"
        with run_lock(tmp_path, "run-a", {"train": "k1"}):   # raised RunLockedError before
            writer_done.set()
            reader.join(timeout=30)
            assert [h["logical_run"] for h in held_locks(tmp_path)] == ["run-a"]   # and readers still see it
    finally:
        writer_done.set()
        reader.join(timeout=30)
    assert seen == [[]]   # the reader looked before the run took its lock: nothing was held then


def test_a_run_refused_while_its_holder_starts_says_so(tmp_path):
    """The holder took the lock and has not written its record yet: the refusal names no pid 'None' and no 1970."""
    with run_lock(tmp_path, "run-a") as path:
        path.write_text("")   # as between the holder's lock call and its record
        with pytest.raises(RunLockedError) as refused:
            with run_lock(tmp_path, "run-a"):
                pass
    assert "in another process (starting)" in str(refused.value)
    assert "None" not in str(refused.value) and "1970" not in str(refused.value)
