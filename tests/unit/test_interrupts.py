"""The tests' processes answer Ctrl-C even when the test run itself is a background job (tests/conftest.py)."""
from __future__ import annotations

import signal
import subprocess
import sys

from tests.conftest import ROOT

REPORT = "import signal; print(signal.getsignal(signal.SIGINT))"


def started_ignoring_sigint(code: str) -> str:
    """What `code` prints, run by a Python started as a shell starts a background job: SIGINT ignored."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)).stdout.strip()


def test_a_background_job_ignores_sigint_in_what_it_starts():
    # the premise: without the conftest, a process started by a background job inherits the ignored SIGINT
    child = f"import subprocess, sys; print(subprocess.run([sys.executable, '-c', {REPORT!r}], " \
            "capture_output=True, text=True).stdout)"
    assert started_ignoring_sigint(child) == str(signal.SIG_IGN)


def test_processes_the_tests_start_get_the_default_ctrl_c_handler_under_a_background_job():
    child = f"import tests.conftest, subprocess, sys; print(subprocess.run([sys.executable, '-c', {REPORT!r}], " \
            "capture_output=True, text=True).stdout)"
    assert started_ignoring_sigint(child) == str(signal.default_int_handler)


def test_a_process_the_tests_start_stops_on_sigint_under_a_background_job():
    # `prefect worker start` sets no SIGINT handler: a plain sleeping Python stands for it
    child = ("import tests.conftest, signal, subprocess, sys, time\n"
             "p = subprocess.Popen([sys.executable, '-c', 'import time; print(1, flush=True); time.sleep(60)'], "
             "stdout=subprocess.PIPE)\n"
             "p.stdout.readline(); p.send_signal(signal.SIGINT)\n"
             "try:\n    print(p.wait(timeout=20))\n"
             "except subprocess.TimeoutExpired:\n    p.kill(); print('still running')")
    # Python ends on an uncaught KeyboardInterrupt by SIGINT itself, so the shell sees "interrupted": -2
    assert started_ignoring_sigint(child) == str(-signal.SIGINT)
