"""Is the process running a pipeline run still alive? What a run records about its process, its heartbeat, and the
reaper that marks KILLED the runs whose process is gone (kill -9, a lost terminal), so none shows RUNNING forever.

A pid means something only inside its PID namespace: two containers with the same host name (a pod's containers,
`docker run --hostname`, `--pid=host` for one and not the other) see different processes under one number, and a
reaper in one of them found a live run's pid missing (or held by its own init) and marked it KILLED. So a run
records, besides pid and host, the boot id and the inode of its PID namespace, which two namespaces never share:
  - a reaper in the same boot and namespace judges by the pid and its kernel start tick (nerflow.processes), at once;
  - a reaper anywhere else cannot see the process and judges by the heartbeat instead: the running process updates
    `nerflow.heartbeat` every `HEARTBEAT_S` and the run is marked KILLED only once it is older than `STALE_S`.
A run recorded before these tags existed is judged by its pid, as it always was.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

from mlflow import MlflowClient

from nerflow.processes import BOOT_ID, kernel_start

log = logging.getLogger("nerflow.liveness")
PID_TAG, HOST_TAG, PID_STARTED_TAG = "nerflow.pid", "nerflow.host", "nerflow.pid_started"
NAMESPACE_TAG, START_TICK_TAG, HEARTBEAT_TAG = "nerflow.pid_namespace", "nerflow.start_tick", "nerflow.heartbeat"
# Seconds between heartbeats, and the age at which a reaper that cannot see the process takes it for dead: ten
# missed beats, so a busy tracking server or a loaded host does not get a live run killed.
HEARTBEAT_ENV, STALE_ENV = "NERFLOW_HEARTBEAT_S", "NERFLOW_HEARTBEAT_STALE_S"
HEARTBEAT_S, STALE_S = 30.0, 300.0


def _seconds(env: str, default: float) -> float:
    from nerflow.config import ConfigError

    raw = os.environ.get(env)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{env}={raw!r}: must be a positive number of seconds")
    return value


def namespace() -> str:
    """`BOOT_ID:PID_NAMESPACE_INODE` of this process; parts it cannot read are empty (no /proc: not Linux)."""
    boot = ino = ""
    with contextlib.suppress(OSError):
        boot = BOOT_ID.read_text().strip()
    with contextlib.suppress(OSError):
        ino = str(os.stat("/proc/self/ns/pid").st_ino)
    return f"{boot}:{ino}"


def process_tags() -> dict[str, str]:
    """Who runs the attempt, and a first heartbeat: a later command marks the run KILLED once this process is gone."""
    import psutil

    me = psutil.Process()
    _, tick = kernel_start(me.pid) or ("", -1)
    return {PID_TAG: str(me.pid), HOST_TAG: socket.gethostname(), PID_STARTED_TAG: f"{me.create_time():.2f}",
            NAMESPACE_TAG: namespace(), START_TICK_TAG: str(tick), HEARTBEAT_TAG: f"{time.time():.2f}"}


@contextlib.contextmanager
def heartbeat(client: MlflowClient, run_id: str, every_s: float | None = None) -> Iterator[None]:
    """Update the run's heartbeat every `every_s` (default `NERFLOW_HEARTBEAT_S`, else HEARTBEAT_S) from a daemon
    thread while inside. A failed update is skipped, not raised: the run must not fail because the tracking server
    hiccuped, and the next beat comes before a reaper would call it stale."""
    every_s = every_s or _seconds(HEARTBEAT_ENV, HEARTBEAT_S)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.2f}")
            except Exception as e:  # noqa: BLE001 - any failure of one beat is the same: try at the next
                log.debug("heartbeat of run %s not recorded: %s", run_id, e)

    thread = threading.Thread(target=beat, name=f"nerflow-heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s + 30)


def _pid_alive(tags: dict[str, str]) -> bool:
    """The recorded process, judged from inside its own PID namespace: its pid runs, started at the recorded tick
    of this boot (a reused pid started later), or, for a record without a tick, at the recorded time."""
    import psutil

    try:
        pid = int(tags[PID_TAG])
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        tick = int(tags.get(START_TICK_TAG, "-1"))
        now = kernel_start(pid)
        if tick >= 0 and now is not None:
            return now[1] == tick
        return f"{proc.create_time():.2f}" == tags.get(PID_STARTED_TAG)
    except (psutil.Error, KeyError, ValueError):
        return False


def dead_because(tags: dict[str, str], here: str, now: float, stale_s: float) -> str | None:
    """Why the run's process is gone, or None while it may be alive. `here`: this reaper's namespace()."""
    pid, host = tags.get(PID_TAG), tags.get(HOST_TAG)
    recorded = tags.get(NAMESPACE_TAG)
    if recorded is None or recorded == here:
        if _pid_alive(tags):
            return None
        return f"process {pid} on {host} ended without closing the run (killed); found by a later nerflow command"
    try:
        age = now - float(tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        age = float("inf")
    if age <= stale_s:
        return None   # another container or boot: its pid means nothing here, and it beat recently
    return (f"process {pid} on {host} (another PID namespace or boot) sent no heartbeat for {age:.0f} s (more than "
            f"{stale_s:g}); found by a later nerflow command")


def running_here(client: MlflowClient, host: str) -> Iterator:
    """Every RUNNING run recorded on this host name, all pages of every experiment."""
    from nerflow.prefect_tasks import mlflow_pages

    experiments = mlflow_pages.experiment_ids(client)
    for i in range(0, len(experiments), 100):   # at most 100 experiments per search: a batch each
        yield from mlflow_pages.runs(client, experiments[i:i + 100],
                                     f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'")


def reap_dead_runs(client: MlflowClient, stale_s: float | None = None) -> list[str]:
    """Mark KILLED every RUNNING pipeline run of this host name whose process is gone (dead_because). `stale_s`:
    the heartbeat age that means gone (default `NERFLOW_HEARTBEAT_STALE_S`, else STALE_S). Returns their ids."""
    from nerflow.prefect_tasks.tracking import log_tags

    stale_s = _seconds(STALE_ENV, STALE_S) if stale_s is None else stale_s
    here, reaped = namespace(), []
    for run in list(running_here(client, socket.gethostname())):
        why = dead_because(run.data.tags, here, time.time(), stale_s)
        if why is not None:
            log_tags(client, run.info.run_id, {"error": why})
            client.set_terminated(run.info.run_id, "KILLED")
            reaped.append(run.info.run_id)
    return reaped
