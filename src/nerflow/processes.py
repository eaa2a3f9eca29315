"""Signalling a process nerflow started, and nothing else.

A pid written to a file (a pid file, a state file) outlives its process: after a kill -9 or a reboot the kernel
hands the same number to whatever starts next, and signalling "the pid in the file" would stop that. So what is
recorded is the process's identity: pid, start time (the kernel's, read through psutil) and command line. A
process is signalled only while all three still match; a record that does not match names a process that is gone,
whatever now holds its pid.

Used by the temporary Prefect server's pid files (nerflow.flows.prefect_server) and by the local team servers
(infra/team.py).
"""
from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

import psutil

# psutil's start time is the kernel's start tick plus the boot time, and /proc/stat gives the boot time in whole
# seconds, recomputed from the wall clock: a clock step can move it by a second. A pid reused within one second by
# a process with the same command line is not a case to guard against; a clock step is.
START_SLACK_S = 1.0


@dataclass(frozen=True)
class ProcessId:
    pid: int
    started: float             # psutil.Process.create_time(): seconds since the epoch
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        """The identity of the live process `pid` now; None when there is none (or only a zombie, which holds
        nothing and cannot be stopped)."""
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return cls(pid, proc.create_time(), tuple(proc.cmdline()))
        except psutil.Error:
            return None

    def to_json(self) -> dict:
        return {"pid": self.pid, "started": self.started, "cmdline": list(self.cmdline)}

    @classmethod
    def from_json(cls, value: object) -> ProcessId | None:
        """The identity a record holds; None when it holds none (a record written before identities were, which
        names only a pid): such a record proves nothing, and its process is never signalled."""
        try:
            return cls(int(value["pid"]), float(value["started"]), tuple(str(a) for a in value["cmdline"]))
        except (TypeError, KeyError, ValueError):
            return None


def _matching(recorded: ProcessId) -> psutil.Process | None:
    """The live process that is still the one recorded (same pid, start time and command line), or None."""
    try:
        proc = psutil.Process(recorded.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if abs(proc.create_time() - recorded.started) > START_SLACK_S:
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
