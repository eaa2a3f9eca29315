"""Signalling a process nerflow started, and nothing else.

A pid written to a file (a pid file, a state file) outlives its process: after a kill -9 or a reboot the kernel
hands the same number to whatever starts next, and signalling "the pid in the file" would stop that. So what is
recorded is the process's identity: pid, start time and command line. A process is signalled only while all three
still match; a record that does not match names a process that is gone, whatever now holds its pid.

The start time compared is the kernel's own: the clock tick since boot at which the process started, with the boot's
id. psutil's create_time() adds the boot time that /proc/stat recomputes from the wall clock, so a clock step (a VM
resumed from a snapshot, NTP setting the date) moves it by the size of the step: a live server looked like another
process and was not stopped. Where /proc is not there, create_time() is what is compared.

Used by the temporary Prefect server's pid files (nerflow.flows.prefect_server) and by the local team servers
(infra/team.py).
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

# Without /proc: psutil's start time, in whole seconds of boot time recomputed from the wall clock. A pid reused
# within one second by a process with the same command line is not a case to guard against.
START_SLACK_S = 1.0
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def kernel_start(pid: int) -> tuple[str, int] | None:
    """(boot id, start tick) of `pid` from /proc: field 22 of /proc/PID/stat counts clock ticks since boot, which no
    change of the wall clock moves. None where there is no /proc (or no such process)."""
    try:
        boot = BOOT_ID.read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()   # the name may hold spaces
        return boot, int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessId:
    pid: int
    started: float             # psutil.Process.create_time(): seconds since the epoch (shown; compared without /proc)
    cmdline: tuple[str, ...]
    boot: str = ""             # kernel_start(): the boot's id and the start tick, "" and -1 where unknown
    start_tick: int = -1

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        """The identity of the live process `pid` now; None when there is none (or only a zombie, which holds
        nothing and cannot be stopped)."""
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            boot, tick = kernel_start(pid) or ("", -1)
            return cls(pid, proc.create_time(), tuple(proc.cmdline()), boot, tick)
        except psutil.Error:
            return None

    @classmethod
    def after_exec(cls, pid: int, timeout: float = 10.0) -> ProcessId | None:
        """The identity of a process just started. Popen returns when exec closes its error pipe, before the kernel
        has set up the new command line: read at once, /proc/PID/cmdline is sometimes empty and the record would
        match nothing (a server recorded so is never stopped). Waits (up to `timeout`) for the command line."""
        deadline = time.monotonic() + timeout
        found = cls.of(pid)
        while found is not None and not found.cmdline and time.monotonic() < deadline:
            time.sleep(0.01)
            found = cls.of(pid)
        return found

    def to_json(self) -> dict:
        record = {"pid": self.pid, "started": self.started, "cmdline": list(self.cmdline)}
        return record | ({"boot": self.boot, "start_tick": self.start_tick} if self.boot else {})

    @classmethod
    def from_json(cls, value: object) -> ProcessId | None:
        """The identity a record holds; None when it holds none (a record written before identities were, which
        names only a pid): such a record proves nothing, and its process is never signalled."""
        try:
            return cls(int(value["pid"]), float(value["started"]), tuple(str(a) for a in value["cmdline"]),
                       str(value.get("boot", "")), int(value.get("start_tick", -1)))
        except (TypeError, KeyError, ValueError, AttributeError):
            return None


def _matching(recorded: ProcessId) -> psutil.Process | None:
    """The live process that is still the one recorded (same pid, start time and command line), or None."""
    try:
        proc = psutil.Process(recorded.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        now = kernel_start(recorded.pid) if recorded.boot else None
        if now is not None:
            if now != (recorded.boot, recorded.start_tick):
                return None   # started at another tick, or in another boot: the pid was reused
        elif abs(proc.create_time() - recorded.started) > START_SLACK_S:
            return None   # the pid was reused: another process
        if tuple(proc.cmdline()) != recorded.cmdline:
            return None   # within the slack, but not the command that was started
        return proc
    except psutil.Error:   # gone, or not ours to read
        return None


def owned(recorded: ProcessId | None) -> bool:
    """Is the process recorded still running (the very process, not one that reused its pid)?"""
    return recorded is not None and _matching(recorded) is not None


def signal_if_owned(recorded: ProcessId | None, sig: int = signal.SIGTERM) -> bool:
    """Send `sig` to the recorded process if it is still that process; True when sent.

    Race-free where Linux has pidfds: the descriptor is opened before the identity is checked and the signal goes
    through it, so it reaches the process that was checked even if that one exits and its pid is reused in between.
    Elsewhere psutil checks the start time once more just before sending."""
    if recorded is None:
        return False
    fd = None
    with contextlib.suppress(AttributeError, OSError):   # no pidfd (old kernel, seccomp) or the pid is gone
        fd = os.pidfd_open(recorded.pid)
    try:
        proc = _matching(recorded)
        if proc is None:
            return False
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            proc.send_signal(sig)   # raises NoSuchProcess if the pid was reused since `_matching` looked
        return True
    except (ProcessLookupError, PermissionError, psutil.NoSuchProcess, psutil.AccessDenied):
        return False   # gone since the check, or not ours to signal
    finally:
        if fd is not None:
            os.close(fd)
