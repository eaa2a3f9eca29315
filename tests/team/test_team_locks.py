"""The promotion lock across hosts: with a Prefect server (PREFECT_API_URL) and a tracking server, two processes
moving the same alias take turns on the Prefect server's global concurrency limit; nothing host-local is involved
(the processes share no file lock: the sqlite-store flock is not used for a tracking server)."""
from __future__ import annotations

import json
import subprocess
import sys

import httpx

from .conftest import PREFECT_AUTH

HOLD_S = 2.0
CRITICAL_SECTION = f"""
import json, sys, time
from nerflow.prefect_tasks.champion import promotion_lock
with promotion_lock(sys.argv[1], sys.argv[2]):
    entered = time.time()
    time.sleep({HOLD_S})
    left = time.time()
print(json.dumps([entered, left]))
"""


def hold_in_two_processes(env: dict, aliases: tuple[str, str]) -> list[list[float]]:
    procs = [subprocess.Popen([sys.executable, "-c", CRITICAL_SECTION, "lock-model", alias], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for alias in aliases]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    return sorted(json.loads(out.strip().splitlines()[-1]) for out, _ in outs)


def test_promotions_of_one_alias_take_turns_on_the_prefect_server(team, team_env):
    env = {**team_env, "OMP_NUM_THREADS": "1"}
    first, second = hold_in_two_processes(env, ("champion", "champion"))
    assert second[0] >= first[1] - 0.05, (first, second)   # the second entered after the first left
    limits = httpx.post(f"{team.prefect_api_url}/v2/concurrency_limits/filter", auth=PREFECT_AUTH, json={}).json()
    # taken on the Prefect server, and deleted by its last holder when done (tasks/global_locks.py)
    assert "nerflow-promote-lock-model-champion" not in {limit["name"] for limit in limits}
    # control: two different aliases do not wait for each other, so the measurement above can see an overlap
    a, b = hold_in_two_processes(env, ("champion", "staging"))
    assert b[0] < a[1], (a, b)
