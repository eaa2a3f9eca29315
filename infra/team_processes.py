"""Ports and process groups of the local team servers: free ports, whether a port listens, whether a server's
process group still has a live member, and stopping that group (SIGTERM, then SIGKILL)."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

from nerflow.processes import ProcessId, owned


def free_ports(host: str, n: int) -> list[int]:
    """Ports the kernel hands out for port 0, all held at once so that no two are the same."""
    socks = [socket.socket() for _ in range(n)]
    ports = [s.bind((host, 0)) or s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in the group? PID 1 here may not reap orphans, so kill(0) would see zombies."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def stop_group(pgid: int | None, kill: bool = False, grace: float = 10.0) -> None:
    """SIGTERM (or SIGKILL) a server's whole process group; SIGKILL what is still there after `grace` seconds."""
    for sig, wait in ((signal.SIGKILL if kill else signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not pgid or not group_alive(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):  # gone, or (pid reused) never ours
            return
        deadline = time.monotonic() + wait
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)


def is_ours(name: str, recorded: ProcessId | None, pid: int | None = None) -> bool:
    """Is the process group `recorded` names still the server this state started? Yes while its leader is still
    the recorded process (pid, start time and command line). With the leader gone (or a zombie) while its group
    lives on, yes too: the kernel keeps a process group's id reserved while any member lives, so no process
    started since has been given that pid. (The one case this cannot tell apart: our whole group died, a new
    process got the pid, founded a group of its own and died leaving members. Not a case that happens.)"""
    if recorded is None:
        if pid:   # state.json from an older team.py: a pid only, which proves nothing about its holder now
            print(f"team.py: not stopping {name} (pid {pid}): the state holds no start time to tell it from a "
                  "process that reused the pid; if it is still running, stop it yourself", file=sys.stderr)
        return False
    return owned(recorded) or (ProcessId.of(recorded.pid) is None and group_alive(recorded.pid))
