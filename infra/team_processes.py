"""Ports and process groups of the local team servers: free ports, whether a port listens, whether a server's
process group still has a live member, and stopping that group (SIGTERM, then SIGKILL)."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


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
