"""The promotion lock across hosts: with a Prefect server (PREFECT_API_URL) and a tracking server, two processes
moving the same alias take turns on the Prefect server's global concurrency limit; nothing host-local is involved
(the processes share no file lock: the sqlite-store flock is not used for a tracking server).

The overlap is forced with files, not hoped for by timing: each process marks itself "at the lock" before asking
for it, and whoever holds it stays inside until the other has reached the lock. What is asserted is the invariant
(never two inside at once), or, for two different aliases, that both are inside together (which deadlocks, and
fails at the deadline, if they shared a lock). A first version waited for the other's "inside" file, which the other
removes on leaving: a 50 ms poll could miss it (it failed so once); "entered" files stay."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

CRITICAL_SECTION = """
import json, sys, time
from pathlib import Path
from nerflow.prefect_tasks.champion import promotion_lock
barrier, me, other, alias, wait_for = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

def wait(path):
    deadline = time.monotonic() + 90
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{me}: {path.name} never appeared")
        time.sleep(0.05)

(barrier / f"at-lock-{me}").touch()
with promotion_lock("lock-model", alias):
    (barrier / f"entered-{me}").touch()   # stays: the other may look after this one has left
    (barrier / f"inside-{me}").touch()
    others_inside = [(barrier / f"inside-{other}").exists()]
    wait(barrier / f"{wait_for}-{other}")   # the other is at the lock (same alias) or has entered (different)
    others_inside.append((barrier / f"inside-{other}").exists())
    (barrier / f"inside-{me}").unlink()
    (barrier / f"left-{me}").touch()
print(json.dumps(others_inside))
"""


def hold_in_two_processes(env: dict, barrier: Path, aliases: tuple[str, str], wait_for: str) -> list[list[bool]]:
    """Per process: was the other inside the lock when it entered, and when it was about to leave."""
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", CRITICAL_SECTION, str(barrier), me, other, alias, wait_for],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other, alias in (("a", "b", aliases[0]), ("b", "a", aliases[1]))]
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def test_promotions_of_one_alias_take_turns_on_the_prefect_server(team, team_env, tmp_path):
    env = {**team_env, "OMP_NUM_THREADS": "1"}
    seen = hold_in_two_processes(env, tmp_path / "same", ("champion", "champion"), wait_for="at-lock")
    assert seen == [[False, False], [False, False]]   # whoever was inside, the other never was at the same time
    limits = httpx.post(f"{team.prefect_api_url}/v2/concurrency_limits/filter", json={}).json()
    assert "nerflow-promote-lock-model-champion" in {limit["name"] for limit in limits}
    # two different aliases do not wait for each other: each stays inside until the other has entered, so both
    # are inside at once when the second enters; sharing one lock would deadlock and fail at the deadline
    hold_in_two_processes(env, tmp_path / "different", ("champion", "staging"), wait_for="entered")
