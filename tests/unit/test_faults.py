"""The fault switch (nerflow.faults): off unless set, kills (or raises) exactly at the named point, and every point
in the code is killed at by some test."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nerflow import faults

TESTS = Path(__file__).resolve().parents[1]
PROGRAM = """
from nerflow import faults
for i in range(3):
    faults.point("a.b", "register")
    print("passed", i, flush=True)
"""


def run(switch: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", **({faults.ENV: switch} if switch is not None else {})}
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("switch,passed,killed", [
    (None, 3, False), ("", 3, False), ("other", 3, False), ("a.b/train", 3, False),   # off, or another point
    ("a.b", 0, True), ("a.b/register", 0, True), ("a.b@2", 1, True), ("a.b/register@3", 2, True),
])
def test_the_switch_kills_at_the_named_point_only(switch, passed, killed):
    done = run(switch)
    assert done.stdout.count("passed") == passed, done.stderr
    assert done.returncode == (-signal.SIGKILL if killed else 0), done.stderr


def test_error_mode_raises_an_oserror_naming_the_point(monkeypatch):
    monkeypatch.setenv(faults.ENV, "a.b/register:error")
    faults.point("a.b", "train")   # another caller of the point: nothing
    with pytest.raises(faults.InjectedFault, match="a.b/register") as raised:
        faults.point("a.b", "register")
    assert isinstance(raised.value, OSError)


def test_pause_mode_waits_for_a_signal_then_hands_it_to_the_handler_in_place():
    """`:pause` holds the process at the point until SIGINT, then the handler that was installed before the point
    receives it and the program goes on (a training loop's stop request: the signal is neither lost nor fatal)."""
    program = """
import signal, sys
from nerflow import faults
signal.signal(signal.SIGINT, lambda signum, frame: print("handled", signal.Signals(signum).name, flush=True))
faults.point("a.b")
print("went on", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"PATH": "/usr/bin:/bin", faults.ENV: "a.b:pause"})
    said = proc.stderr.readline()   # blocks until the point is reached: no timing involved
    assert "pausing at a.b" in said and proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out.split("\n")[:2]) == (0, ["handled SIGINT", "went on"]), err


def test_pause_mode_goes_on_at_sigusr1_without_a_signal_to_handle():
    program = """
import signal
from nerflow import faults
signal.signal(signal.SIGINT, lambda signum, frame: print("handled", flush=True))
faults.point("a.b")
print("went on", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"PATH": "/usr/bin:/bin", faults.ENV: "a.b:pause"})
    assert "pausing at a.b" in proc.stderr.readline() and proc.poll() is None
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "went on\n"), err


def test_every_point_in_the_code_is_killed_at_by_a_test():
    """A new point that no crash test names is a crash nobody checked."""
    points = faults.points_in_source()
    assert {"promotion.intended", "register.version-created", "cache.output-written"} <= points
    text = "\n".join(p.read_text() for p in TESTS.rglob("*.py") if p.name != Path(__file__).name)
    assert sorted(p for p in points if f'"{p}' not in text) == []
