"""Two `nerflow schedule NAME` at once on a new name make one schedule, not two that each fire (duplicate runs), and
each says truly what it did: they take turns (a lock on the team's Prefect server), so the second finds the first's
deployment and updates it. Without the turns both found no deployment, and Prefect's create, an upsert that deletes
the schedules of the deployment it updates, let both report "created" while the first one's cadence was replaced."""
from __future__ import annotations

import logging
import os
import threading

import httpx

from nerflow.flows import deployments

from .conftest import PREFECT_AUTH
from .scheduling import wait_for


class FirstHeldAfterFind:
    """`deployments.find` as `apply` calls it: the first caller is held after its look-up (it found nothing) until
    released, so the second `apply` starts while the first is between looking and creating."""

    def __init__(self, real):
        self.real, self.calls = real, 0
        self.first_looked, self.release = threading.Event(), threading.Event()

    def __call__(self, client, name):
        found = self.real(client, name)
        self.calls += 1
        if self.calls == 1:
            self.first_looked.set()
            assert self.release.wait(60), "the test never released the first creator"
        return found


class Said(logging.Handler):
    """What the lock says while a command waits (nerflow.locks logs to the console, not through the root)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def text(self) -> str:
        return "\n".join(self.lines)


def test_two_creations_of_one_new_schedule_at_once_make_one_schedule(team, monkeypatch, caplog):
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    api, name = team.prefect_api_url, "race-twice"
    find = FirstHeldAfterFind(deployments.find)
    monkeypatch.setattr(deployments, "find", find)
    # the second updates in place, pausing first: what it waits for to settle is Prefect's scheduler, not the race
    monkeypatch.setattr(deployments, "SCHEDULER_SETTLE_S", 0.5)
    said = Said()
    caplog.set_level(logging.INFO, logger="nerflow.locks")   # its level only: the records reach `said`
    monkeypatch.setattr(logging.getLogger("nerflow.locks"), "handlers", [*logging.getLogger("nerflow.locks").handlers,
                                                                         said])
    results, errors = {}, []

    def create(interval_s: float) -> None:
        try:
            with temporary_settings(updates={PREFECT_API_URL: api,
                                             PREFECT_API_AUTH_STRING: os.environ["PREFECT_API_AUTH_STRING"]}):
                results[interval_s] = deployments.apply(name, "configs/race.yaml", [], str(team.dir),
                                                        deployments.Cadence(interval_s=interval_s), None)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    first, second = threading.Thread(target=create, args=(3600.0,)), threading.Thread(target=create, args=(7200.0,))
    first.start()
    try:
        wait_for(lambda: find.first_looked.is_set() or errors, 60, "the first creator to look for the deployment")
        second.start()
        wait_for(lambda: "waiting for schedule race-twice" in said.text() or find.calls > 1 or errors, 60,
                 "the second creator to wait for the first")
        assert find.calls == 1, "the second creator looked while the first was between looking and creating"
    finally:
        find.release.set()
    for t in (first, second):
        if t.is_alive():
            t.join(timeout=120)
    assert not errors, errors
    assert results[3600.0][0] == results[7200.0][0]
    assert (results[3600.0][1], results[7200.0][1]) == (True, False)   # the first created it, the second updated it
    schedules = httpx.get(f"{api}/deployments/{results[3600.0][0]}/schedules",
                          auth=PREFECT_AUTH).raise_for_status().json()
    assert len(schedules) == 1, schedules
    assert schedules[0]["slug"] == "nerflow"
    assert schedules[0]["schedule"]["interval"] == 7200.0   # the later command's cadence, as it said
    httpx.delete(f"{api}/deployments/{results[3600.0][0]}", auth=PREFECT_AUTH).raise_for_status()
