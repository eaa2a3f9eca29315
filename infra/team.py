"""Local team servers: PostgreSQL (Debian's binaries), `mlflow server` and `prefect server start` on it, on free
ports of one host address, no docker. Importable (tests: TeamServers) and a CLI: `python infra/team.py up|down|env
--state-dir DIR`. Everything lives in DIR (state.json, team.env, logs/, artifacts/, prefect-home/) except the
PostgreSQL data dir, which sits in a /tmp dir the `postgres` user can reach when we run as root.

A server is stopped only if it is provably the one this state started: state.json keeps each server's identity
(pid, start time, command line; nerflow.processes), not just its pid, which the kernel may have handed to another
process since. Run it with the project's Python (`.venv/bin/python infra/team.py`): it imports nerflow."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from nerflow.processes import ProcessId, owned

PG_ROLE = "nerflow"
START_TIMEOUT = {"mlflow": 180.0, "prefect": 360.0}  # first start migrates both schemas on 2 busy cores
CLIENT_VARS = {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL", "PREFECT_API_KEY"}
HEALTH_PATH = {"mlflow": "/health", "prefect": "/api/health"}
# Short service loops so a schedule of a few seconds fires in a test; a variable already in the environment wins.
FAST_SERVICES = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "5",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_LOOP_SECONDS": "5",
}


def pg_bin() -> Path:
    """Newest Debian PostgreSQL (/usr/lib/postgresql/<major>/bin); install-debian-deps.sh puts it there."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL binaries not found in /usr/lib/postgresql: run infra/install-debian-deps.sh")
    return found[-1].parent


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


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class TeamServers:
    def __init__(self, state_dir: Path, host: str = "127.0.0.1", python: str = sys.executable,
                 fast_services: bool = False, ui: bool = True):
        self.dir = Path(state_dir).resolve()
        self.host, self.python, self.fast_services, self.ui = host, python, fast_services, ui
        self.procs: dict[str, subprocess.Popen] = {}  # servers this process started, reaped on stop
        state_file = self.dir / "state.json"
        self.state: dict = json.loads(state_file.read_text()) if state_file.exists() else {}

    def _url(self, name: str) -> str:
        return f"http://{self.state['host']}:{self.state['ports'][name]}"

    @property
    def mlflow_uri(self) -> str:
        return self._url("mlflow")

    @property
    def prefect_api_url(self) -> str:
        return self._url("prefect") + "/api"

    @property
    def postgres_url(self) -> str:
        """Server URL without a database: append /mlflow or /prefect."""
        s = self.state
        return f"postgresql://{PG_ROLE}:{s['pg_password']}@{s['host']}:{s['ports']['postgres']}"

    @property
    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.mlflow_uri, "PREFECT_API_URL": self.prefect_api_url}

    def up(self) -> dict[str, str]:
        if any(group_alive(pid) for pid in self.state.get("pids", {}).values()):
            raise RuntimeError(f"team servers from {self.dir} are running: run `down` first")
        self.down()  # what a crashed earlier `up` on this DIR left (a PostgreSQL, a /tmp dir)
        for sub in ("logs", "artifacts"):  # a fresh database: fresh artifacts and logs too
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        (self.dir / "logs").mkdir(parents=True)
        ports = dict(zip(("postgres", "mlflow", "prefect"), free_ports(self.host, 3)))
        self.state = {"host": self.host, "ports": ports, "pids": {}, "pg_password": secrets.token_urlsafe(24)}
        try:
            self._start_postgres()
            self._spawn("mlflow"), self._spawn("prefect")  # both migrate at once: the waits overlap
            self._wait("mlflow"), self._wait("prefect")
        except BaseException:
            self.down()
            raise
        env_file = self.dir / "team.env"
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in self.env.items()))
        return self.env

    def down(self) -> None:
        for name in ("prefect", "mlflow"):
            self._stop(name)
        self._stop_postgres()
        (self.dir / "team.env").unlink(missing_ok=True)
        if self.state:
            self.state.pop("pg_password", None)  # its database is gone
            self._save()

    def stop_mlflow(self, kill: bool = False) -> None:
        self._stop("mlflow", kill=kill)
        deadline, port = time.monotonic() + 15, self.state["ports"]["mlflow"]
        while port_open(self.host, port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow still listens on port {port}")
            time.sleep(0.1)

    def start_mlflow(self) -> None:
        self._spawn("mlflow")
        self._wait("mlflow")

    def __enter__(self) -> TeamServers:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def _save(self) -> None:
        """state.json holds the role's password: create it 0600 before anything is written into it."""
        with os.fdopen(os.open(self.dir / "state.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            os.fchmod(f.fileno(), 0o600)  # also when an older file was laxer
            json.dump(self.state, f, indent=2)

    def _pg(self, tool: str, *args: str, **kw) -> None:
        """PostgreSQL refuses to run as root: then its tools run as the `postgres` user."""
        cmd = [str(pg_bin() / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, cwd=self.state["pg_root"], capture_output=True, text=True, **kw)
        if done.returncode:
            log = Path(self.state["pg_root"]) / "postgres.log"
            raise RuntimeError(f"PostgreSQL: {tool} failed ({done.returncode}):\n{done.stdout}"
                               f"{done.stderr}\n{log_tail(log) if log.exists() else ''}")

    def _start_postgres(self) -> None:
        # pytest's tmp dirs are 0700 root: the cluster goes to a 0755 dir in /tmp that postgres owns.
        root = Path(tempfile.mkdtemp(prefix="nerflow-pg-", dir="/tmp"))
        root.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        self.state["pg_root"] = str(root)
        self._save()
        sock, port = root / "sock", str(self.state["ports"]["postgres"])
        self._pg("initdb", "-D", str(root / "data"), "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
        # Local connections are trusted: only postgres (and root) may reach the socket.
        sock.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(sock, "postgres", "postgres")
        opts = (f"-c listen_addresses={self.host} -c port={port} -c unix_socket_directories={sock} "
                "-c unix_socket_permissions=0700")
        self._pg("pg_ctl", "-D", str(root / "data"), "-l", str(root / "postgres.log"), "-o", opts,
                 "-w", "-t", "60", "start", start_new_session=True)
        self._remember("postgres", int((root / "data" / "postmaster.pid").read_text().split()[0]))
        pw = self.state["pg_password"]  # token_urlsafe: [A-Za-z0-9_-] only, safe inside a SQL literal
        self._psql("postgres", f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{pw}';"
                               f"CREATE DATABASE mlflow OWNER {PG_ROLE}; CREATE DATABASE prefect OWNER {PG_ROLE};")
        self._psql("prefect", "CREATE EXTENSION IF NOT EXISTS pg_trgm;")  # Prefect's migrations need it

    def _psql(self, db: str, sql: str) -> None:
        """As the bootstrap superuser over the unix socket (trust); SQL on stdin keeps the password out of ps."""
        root = Path(self.state["pg_root"])
        self._pg("psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(root / "sock"),
                 "-p", str(self.state["ports"]["postgres"]), "-U", "postgres", "-d", db, "-f", "-", input=sql)

    def _stop_postgres(self) -> None:
        root = Path(self.state.get("pg_root") or "/nonexistent")
        pid_file = root / "data" / "postmaster.pid"
        recorded = ProcessId.from_json(self.state.get("procs", {}).pop("postgres", None))
        if pid_file.exists():
            try:
                self._pg("pg_ctl", "-D", str(root / "data"), "-m", "fast", "-w", "-t", "30", "stop")
            except RuntimeError:  # hung or half dead: the postmaster leads its own group (pg_ctl setsid()s)
                # the pid in postmaster.pid may be stale (a postmaster killed -9): only the one we started
                if self._is_ours("postgres", recorded, int(pid_file.read_text().split()[0])):
                    stop_group(recorded.pid, kill=True)
        if (root / "postgres.log").exists() and (self.dir / "logs").is_dir():
            shutil.copyfile(root / "postgres.log", self.dir / "logs" / "postgres.log")  # kept for a post-mortem
        shutil.rmtree(root, ignore_errors=True)
        self.state.pop("pg_root", None)

    def _command(self, name: str) -> tuple[list[str], dict[str, str]]:
        port, env = str(self.state["ports"][name]), dict(os.environ)
        for key in [k for k in env if k in CLIENT_VARS or k.startswith(("PREFECT_API_DATABASE",
                                                                          "PREFECT_SERVER_DATABASE"))]:
            del env[key]  # a caller's client settings (tracking URI, API URL, test databases) are not ours
        if name == "mlflow":
            # The store URI (with the password) goes by environment, not argv: argv is visible in ps.
            # No job runner: it forks ~7 huey consumers (GenAI jobs nerflow never uses) and leaves a /dev/shm dir.
            env.update(MLFLOW_BACKEND_STORE_URI=f"{self.postgres_url}/mlflow", MLFLOW_DISABLE_TELEMETRY="true",
                       MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
            return [self.python, "-m", "mlflow", "server", "--serve-artifacts", "--artifacts-destination",
                    str(self.dir / "artifacts"), "--host", self.host, "--port", port, "--workers", "1"], env
        env.update(PREFECT_SERVER_DATABASE_CONNECTION_URL=self.postgres_url.replace(
            "postgresql://", "postgresql+asyncpg://") + "/prefect",
            PREFECT_HOME=str(self.dir / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false")   # no "Prefect Cloud" toast in a team's UI
        # The UI asks /ui-settings where its API is; unset, the answer is 127.0.0.1:4200, not this server. A value
        # in the environment wins (a proxy in front of the server: the address browsers use).
        if not {"PREFECT_SERVER_UI_API_URL", "PREFECT_UI_API_URL"} & env.keys():
            env["PREFECT_SERVER_UI_API_URL"] = self.prefect_api_url
        for key, value in FAST_SERVICES.items() if self.fast_services else ():
            env.setdefault(key, value)
        ui = ["--ui"] if self.ui else ["--no-ui"]
        return [self.python, "-m", "prefect", "server", "start", "--host", self.host, "--port", port, *ui], env

    def _spawn(self, name: str) -> None:
        """Own session: a test's Ctrl-C does not reach the server, and its pid is the group to stop."""
        cmd, env = self._command(name)
        with open(self.dir / "logs" / f"{name}.log", "ab") as log:
            # cwd=DIR: the repo's prefect.toml and a .env there must not configure the server.
            proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self.state["pids"][name] = proc.pid
        self._remember(name, proc.pid)

    def _remember(self, name: str, pid: int) -> None:
        """Record the server's identity, read after its exec (Popen, `pg_ctl start -w`, return only then)."""
        found = ProcessId.of(pid) or ProcessId(pid, 0.0, ())   # one that already died: an identity nothing matches
        self.state.setdefault("procs", {})[name] = found.to_json()
        self._save()

    def _wait(self, name: str) -> None:
        url, proc = self._url(name) + HEALTH_PATH[name], self.procs[name]
        deadline = time.monotonic() + START_TIMEOUT[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} server exited ({proc.returncode}) while starting; log tail:\n"
                                   f"{log_tail(self.dir / 'logs' / f'{name}.log')}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{name} server not healthy at {url} after {START_TIMEOUT[name]:.0f} s; log tail:\n"
                           f"{log_tail(self.dir / 'logs' / f'{name}.log')}")

    def _stop(self, name: str, kill: bool = False) -> None:
        pid = self.state.get("pids", {}).pop(name, None)
        recorded = ProcessId.from_json(self.state.get("procs", {}).pop(name, None))
        started_here = self.procs.get(name)
        if started_here is not None and started_here.returncode is None:
            # Our own child, not reaped yet: its pid (and so its group's id) cannot have been handed on. No identity
            # check: a check that failed here killed only the leader and left `mlflow server`'s uvicorn listening.
            stop_group(started_here.pid, kill=kill)
        elif self._is_ours(name, recorded, pid):
            stop_group(recorded.pid, kill=kill)
        if name in self.procs:
            proc = self.procs.pop(name)
            proc.kill()  # a no-op unless it survived its group being stopped
            proc.wait()  # reap the group leader we started
        if self.state:
            self._save()

    @staticmethod
    def _is_ours(name: str, recorded: ProcessId | None, pid: int | None = None) -> bool:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-ui", action="store_true", help="Prefect server without its UI (tests)")
    parser.add_argument("--fast-services", action="store_true", help="short Prefect service loops (tests)")
    args = parser.parse_args(argv)
    team = TeamServers(args.state_dir, host=args.host, fast_services=args.fast_services, ui=not args.no_ui)
    if args.command == "down":
        team.down()
        return 0
    if args.command == "up":
        try:
            team.up()
        except RuntimeError as e:  # the message holds the failing server's log tail: no traceback needed
            print(f"team.py up: {e}", file=sys.stderr)
            return 1
    elif not team.state.get("pids"):
        print(f"no team servers running from {args.state_dir}", file=sys.stderr)
        return 1
    print("".join(f"export {k}={v}\n" for k, v in team.env.items()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
