"""Ctrl-C and SIGTERM for a `nerflow` command: the first stops cleanly, a later one exits at once.

- During training the loop's own handler (nerflow.train.stop_requests) takes the first signal: it checkpoints at
  the next step boundary and stops. A second signal reaches the handler below and abandons the checkpoint.
- Elsewhere the first signal raises KeyboardInterrupt where the command is: the stage in progress is abandoned
  (stage outputs are written atomically, so nothing half-done is ever reused), the MLflow run is marked KILLED,
  the Prefect flow run Cancelled, and the command exits with 130.
- Any signal after that exits at once (os._exit): the temporary Prefect server dies with the process
  (nerflow.flows.prefect_server), and the next nerflow command marks the MLflow run KILLED.

A flow-run process that `nerflow serve` or a worker started is in their process group, so a Ctrl-C on their
terminal reaches it too: see `ignored_after_the_body`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from nerflow.flows.errors import EXIT_INTERRUPTED

_signals_seen = 0


def _handle(signum, frame) -> None:
    global _signals_seen
    _signals_seen += 1
    if _signals_seen > 1:
        sys.stderr.write(f"\n{signal.Signals(signum).name} again: exiting now\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def ignored_after_the_body() -> Iterator[None]:
    """Around the body of a flow that deployments run. In a flow-run process a runner or worker started (`python -m
    prefect.engine`: PREFECT__FLOW_RUN_ID is set), SIGINT is ignored from the moment the body ends: the terminal's
    Ctrl-C for `nerflow serve` (or a worker) reaches the whole process group, and once the body has ended there is
    nothing left to stop, only Prefect reporting the final state and the interpreter exiting, where a SIGINT printed
    a KeyboardInterrupt traceback from an exit handler onto serve's terminal. While the body runs, SIGINT stops it as
    before; SIGTERM, which serve and workers send to cancel a run, still ends the process at any time."""
    try:
        yield
    finally:
        if os.environ.get("PREFECT__FLOW_RUN_ID") and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM both stop the command as described above (main thread only)."""
    global _signals_seen
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _signals_seen = 0
    previous = {s: signal.signal(s, _handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
