"""Two `nerflow schedule NAME` at once on a new name make one schedule, not two that each fire (duplicate runs): on
the team's Prefect server, both creators are held after finding no deployment of that name until the other has
found none too, then both create."""
from __future__ import annotations

import os
import threading

import httpx

from nerflow.flows import deployments

from .conftest import PREFECT_AUTH


class BothFindNothing:
    """`deployments.find` as `apply` calls it: each caller waits, after its look-up, for the other's."""

    def __init__(self, real):
        self.real, self.barrier = real, threading.Barrier(2, timeout=60)

    def __call__(self, client, name):
        found = self.real(client, name)
        self.barrier.wait()
        return found


def test_two_creations_of_one_new_schedule_at_once_make_one_schedule(team, monkeypatch):
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    api, name = team.prefect_api_url, "race-twice"
    monkeypatch.setattr(deployments, "find", BothFindNothing(deployments.find))
    # the loser updates in place, pausing first: what it waits for to settle is Prefect's scheduler, not the race
    monkeypatch.setattr(deployments, "SCHEDULER_SETTLE_S", 0.5)
    results, errors = [], []

    def create(interval_s: float) -> None:
        try:
            with temporary_settings(updates={PREFECT_API_URL: api,
                                             PREFECT_API_AUTH_STRING: os.environ["PREFECT_API_AUTH_STRING"]}):
                results.append(deployments.apply(name, "configs/race.yaml", [], str(team.dir),
                                                 deployments.Cadence(interval_s=interval_s), None))
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=create, args=(s,)) for s in (3600.0, 7200.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len({deployment_id for deployment_id, _ in results}) == 1
    schedules = httpx.get(f"{api}/deployments/{results[0][0]}/schedules", auth=PREFECT_AUTH).raise_for_status().json()
    assert len(schedules) == 1, schedules
    assert sorted(created for _, created in results) == [False, True]   # one created it, the other updated it
    assert schedules[0]["slug"] == "nerflow"
    httpx.delete(f"{api}/deployments/{results[0][0]}", auth=PREFECT_AUTH).raise_for_status()
