"""The temporary Prefect server of one nerflow command, which no terminal signal reaches and no death orphans.

Without `PREFECT_API_URL` Prefect starts a temporary server as a child in the command's process group, so a Ctrl-C
at the terminal stops the server first and the flow then floods the terminal with "Error logging to API" while
training goes on. nerflow starts that server itself instead:
- in its own session (`start_new_session`): the terminal's SIGINT reaches nerflow, which stops the server last;
- with `PR_SET_PDEATHSIG` (Linux): the kernel sends it SIGTERM when nerflow dies, kill -9 included;
- with a pid file under `<prefect home>/servers/`: the next nerflow command stops any server whose owner is gone
  (the fallback where the death signal does not exist). The file holds the identities (pid, start time, command
  line) of the server and of its owner (nerflow.processes): after a kill -9 the death signal has usually stopped
  the server already and its pid may belong to anything by now, so only a process that is provably that server is
  signalled.
With `PREFECT_API_URL` set (a real server), nothing is started. Only then do flow runs log a Prefect UI link
("View at ..."): the temporary server has no UI and is gone when the command ends (NO_UI_LINK).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from nerflow.processes import ProcessId, owned, signal_if_owned

log = logging.getLogger("nerflow.prefect")
PR_SET_PDEATHSIG = 1
# PREFECT_UI_URL while a temporary server is the API: Prefect's engine logs "View at <UI URL>/runs/flow-run/<id>"
# for each flow run whose UI URL it knows (prefect.utilities.urls.url_for: none for an empty setting). That server
# serves no UI and stops with the command, so the link would lead nowhere; the run summary names the MLflow run.
NO_UI_LINK = ""
STARTUP_TIMEOUT_S = 90.0   # when nothing configures it; prefect.toml in the project says the same


class ServiceUnavailable(RuntimeError):
    """A server nerflow needs (MLflow, Prefect) cannot be reached or started."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def servers_dir() -> Path:
    """`<prefect home>/servers`, found as Prefect finds its home (environment, ./prefect.toml, ~/.prefect) but
    without importing Prefect: the "nothing to do" path must stay light."""
    import tomllib

    home = os.environ.get("PREFECT_HOME")
    if not home and Path("prefect.toml").is_file():
        with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
            home = tomllib.loads(Path("prefect.toml").read_text()).get("home")
    return Path(home or Path.home() / ".prefect").expanduser() / "servers"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphans() -> list[int]:
    """Stop temporary servers whose nerflow process is gone (killed before it could stop them); returns their pids.

    A record is acted on only through the identities it holds: the owner counts as alive only if it is still that
    process, and the server is signalled only if it is still the server that was started. Any other record of a
    dead owner is stale (the server died with its owner, and its pid may have been reused since): it is removed
    and nothing is signalled."""
    stopped = []
    for pidfile in sorted(servers_dir().glob("*.json")) if servers_dir().is_dir() else []:
        try:
            info = json.loads(pidfile.read_text())
            server, owner = ProcessId.from_json(info.get("server")), ProcessId.from_json(info.get("owner_process"))
            # A record written before identities were (only pids) proves nothing about whoever holds those pids
            # now: its owner is taken as alive while its pid is (nothing is lost by waiting), its server is never
            # signalled.
            if owned(owner) if owner is not None else _alive(int(info["owner"])):
                continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue   # unreadable: left alone
        if signal_if_owned(server, signal.SIGTERM):
            stopped.append(server.pid)
            log.info("stopped an orphaned temporary Prefect server (pid %s, port %s) of dead process %s",
                     server.pid, info.get("port"), info.get("owner"))
        else:
            log.debug("removing the stale record %s: its server (pid %s) is gone; nothing signalled", pidfile,
                      info.get("pid"))
        pidfile.unlink(missing_ok=True)
    return stopped


def write_record(pidfile: Path, proc: subprocess.Popen, port: int) -> None:
    """The server's record, written whole (a concurrent `stop_orphans` never reads half of it): both identities,
    taken after the server's exec has set up its command line (ProcessId.after_exec) and from this very process."""
    record = {"pid": proc.pid, "owner": os.getpid(), "port": port, "started": time.time(),
              # a server that already died gets an identity no process matches
              "server": (ProcessId.after_exec(proc.pid) or ProcessId(proc.pid, 0.0, ())).to_json(),
              "owner_process": ProcessId.of(os.getpid()).to_json()}
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    partial = pidfile.with_name(f".{pidfile.name}.tmp")   # not `*.json`: stop_orphans does not see it
    partial.write_text(json.dumps(record))
    os.replace(partial, pidfile)


def _start(port: int) -> subprocess.Popen:
    import prefect
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           **get_current_settings().to_environment_variables(exclude_unset=True)}
    env.pop("PREFECT_API_URL", None)
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error", "--lifespan", "on"]
    return subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=_die_with_parent,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise ServiceUnavailable(f"the temporary Prefect server exited with code {proc.returncode}: {err}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/health").status_code == 200:
                    return
            time.sleep(0.1)
    raise ServiceUnavailable(f"the temporary Prefect server did not answer on {url} within {timeout:.0f} s "
                             "(raise server.ephemeral.startup_timeout_seconds in prefect.toml, or set "
                             "PREFECT_API_URL to a running server)")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def startup_timeout() -> float:
    """How long the temporary server may take to answer: `server.ephemeral.startup_timeout_seconds` when set (the
    project's prefect.toml, the environment), else STARTUP_TIMEOUT_S, not Prefect's 20 s: a command run outside the
    project directory does not read its prefect.toml, and on 2 busy cores a first start can take longer than 20 s."""
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral
    configured = "startup_timeout_seconds" in ephemeral.model_fields_set
    return float(ephemeral.startup_timeout_seconds if configured else STARTUP_TIMEOUT_S)


@contextlib.contextmanager
def prefect_api(meanwhile: Callable[[], object] | None = None) -> Iterator[str]:
    """The API URL flows report to: `PREFECT_API_URL` when set, else a temporary server started for this command
    and stopped when the block ends (last, after the flow has recorded its final state). `meanwhile` runs while a
    temporary server boots (the flow's imports: a few seconds of a run that would otherwise wait in line)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        if meanwhile is not None:
            meanwhile()
        yield configured
        return
    stop_orphans()
    port = free_port()
    proc = _start(port)
    pidfile = servers_dir() / f"{proc.pid}.json"
    write_record(pidfile, proc, port)
    url = f"http://127.0.0.1:{port}/api"
    try:
        log.info("starting a temporary Prefect server on %s for this command only (no UI: the summary at the end "
                 "names the MLflow run; set PREFECT_API_URL to use a running server)", url)
        if meanwhile is not None:
            meanwhile()
        _wait_healthy(proc, url, startup_timeout())
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_UI_URL: NO_UI_LINK}):
            yield url
    finally:
        _drain_logs()   # log lines still queued for the API go out while it is up
        stop(proc)
        pidfile.unlink(missing_ok=True)


def _drain_logs() -> None:
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(Exception):
        APILogWorker.drain_all(timeout=5)
