"""Named kill points, for crash tests: `NERFLOW_FAULT_POINT=<name>` makes the process SIGKILL itself when it
reaches `faults.point("<name>")`; `<name>@<n>` waits for the n-th time it is reached (a checkpoint saved twice).

Off unless the variable is set: one dictionary lookup per point. Each point sits between two writes that a crash
could separate, with a comment saying what the state is when it fires and who repairs it. The points are listed by
`points_in_source()` (tests/integration/test_crash_points.py kills at every one of them, so a new point cannot be
left untested). SIGKILL, not an exception: nothing runs after it (no `finally`, no atexit), as with a power cut or
the OOM killer.
"""
from __future__ import annotations

import ast
import os
import signal
from pathlib import Path

ENV = "NERFLOW_FAULT_POINT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Kill this process here if `NERFLOW_FAULT_POINT` names this point (and, with `@n`, this is its n-th hit)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition("@")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)


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
