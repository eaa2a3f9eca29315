"""Named fault points, for crash tests: `NERFLOW_FAULT_POINT=<name>` makes the process SIGKILL itself when it
reaches `faults.point("<name>")`.

The switch's grammar: `NAME[/WHERE][@N][:error]`. `/WHERE` narrows a point that several callers pass to one of
them (`cache.output-written/register`: the register stage's output, not the first stage's); `@N` waits for the
N-th time the point is reached (a checkpoint saved twice); `:error` raises `InjectedFault` (an OSError) instead of
killing, for tests of what a failing write undoes; `:hang` says so on stderr and blocks for good, for tests of what
a hung step (a scorer that never returns) must not hold; `:pause` says so on stderr and waits for a signal: a
SIGINT or SIGTERM is then handed to the process's own handler, a SIGUSR1 only lets it go on. For tests that act on a
process at an exact place (Ctrl-C while a trial's epoch is being reported, a server killed mid-training) instead of at
whatever moment a poll happens to see.

Off unless the variable is set: one dictionary lookup per point. Each point sits between two writes that a crash
could separate, with a comment saying what the state is when it fires and who repairs it. `points_in_source()` lists
them; tests/unit/test_faults.py fails if a test kills at none of them. SIGKILL, not an exception: nothing runs after
it (no `finally`, no atexit), as with a power cut or the OOM killer.
"""
from __future__ import annotations

import ast
import os
import signal
import sys
import threading
import time
from pathlib import Path

ENV = "NERFLOW_FAULT_POINT"
_hits: dict[str, int] = {}


class InjectedFault(OSError):
    """Raised at a point when the switch ends in `:error`."""


def point(name: str, where: str = "") -> None:
    """Kill this process here (or raise InjectedFault) if `NERFLOW_FAULT_POINT` names this point."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    spec, _, mode = wanted.partition(":")
    spec, _, nth = spec.partition("@")
    target, _, target_where = spec.partition("/")
    if target != name or (target_where and target_where != where):
        return
    _hits[spec] = _hits.get(spec, 0) + 1
    if _hits[spec] != (int(nth) if nth else 1):
        return
    if mode == "error":
        raise InjectedFault(f"injected fault at {name}{'/' + where if where else ''} ({ENV})")
    if mode == "hang":
        print(f"{ENV}: hanging at {name}", file=sys.stderr, flush=True)   # a test's barrier: it is there now
        threading.Event().wait()
    if mode == "pause":
        _pause_until_signalled(name)
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _pause_until_signalled(name: str) -> None:
    """Main thread only (where Python runs signal handlers)."""
    stoppers = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    previous = {s: signal.getsignal(s) for s in stoppers}
    arrived: list[int] = []
    for s in stoppers:   # before the line is printed: a signal sent on seeing it cannot be lost
        signal.signal(s, lambda signum, frame: arrived.append(signum))
    try:
        # the pid: a process that a server started (a flow run of `nerflow serve`) is found by its line
        print(f"{ENV}: pausing at {name} (pid {os.getpid()}) until SIGINT, SIGTERM or SIGUSR1 (go on)",
              file=sys.stderr, flush=True)
        while not arrived:
            time.sleep(0.05)   # a signal ends the sleep at once when it reaches this thread
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    if arrived[0] != signal.SIGUSR1:
        signal.raise_signal(arrived[0])   # to the handler in place here (a training loop's stop request)


def points_in_source(*roots: Path) -> set[str]:
    """Every `faults.point("name")` call under `roots` (default: the installed nerflow packages): the names a crash
    test must cover."""
    if not roots:
        import nerflow.flows
        import nerflow.prefect_tasks

        roots = tuple(Path(m.__file__).parent for m in (__import__("nerflow"), nerflow.flows, nerflow.prefect_tasks))
    found = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "point"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "faults"
                        and node.args and isinstance(node.args[0], ast.Constant)):
                    found.add(node.args[0].value)
    return found
