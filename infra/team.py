"""Local team servers: PostgreSQL (Debian's binaries), `mlflow server` and `prefect server start` on it, on free
ports of one host address, no docker. Importable (tests: TeamServers) and a CLI: `python infra/team.py up|down|env
--state-dir DIR`. Everything lives in DIR (state.json, team.env, logs/, artifacts/, prefect-home/) except the
PostgreSQL data dir, which sits in a /tmp dir the `postgres` user can reach when we run as root.

A server is stopped only if it is provably the one this state started: state.json keeps each server's identity
(pid, start time, command line; nerflow.processes), not just its pid, which the kernel may have handed to another
process since. Run it with the project's Python (`.venv/bin/python infra/team.py`): it imports nerflow.

Authentication is on: MLflow runs its basic-auth app (admin account, auth database in DIR), Prefect checks its API
auth string, and each server logs into PostgreSQL as its own role (infra/team_postgres.py). The secrets are made
here, kept in state.json (0600) and handed to the servers by environment, never by argv; team.env (0600) carries
what a client needs, the MLflow admin account included (docs/team.md, "Security")."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# infra/ is no package: its sibling module is found from here also when the tests load this file by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import team_accounts as accounts  # noqa: E402
import team_postgres as postgres  # noqa: E402
from team_processes import free_ports, group_alive, port_open, stop_group  # noqa: E402, F401 (tests use port_open)

from nerflow.processes import ProcessId, owned  # noqa: E402

MLFLOW_ADMIN = "admin"     # the account team.env hands out (the admin's shell); workers use run.env and
                           # promoter.env, the two role accounts (infra/team_accounts.py)
PREFECT_LOGIN = "team"     # Prefect's open-source server has one shared login: the auth string `team:<secret>`
START_TIMEOUT = {"mlflow": 180.0, "prefect": 360.0}  # first start migrates both schemas on 2 busy cores
CLIENT_VARS = {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
               "MLFLOW_TRACKING_TOKEN", "PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"}
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


AUTH_DB = "mlflow-auth.db"   # MLflow's accounts and permissions, in DIR


def new_secrets() -> dict[str, str]:
    """token_urlsafe: [A-Za-z0-9_-], safe in a URL, a SQL literal and an env file without quoting."""
    made = {f"pg_{s}": secrets.token_urlsafe(24) for s in postgres.SERVICES}
    made |= {f"mlflow_{a}": secrets.token_urlsafe(24) for a in accounts.ACCOUNTS}
    return {**made, "mlflow_admin": secrets.token_urlsafe(24), "flask_key": secrets.token_urlsafe(32),
            "prefect_auth": f"{PREFECT_LOGIN}:{secrets.token_urlsafe(24)}"}


def write_private(path: Path, text: str) -> None:
    """A file holding secrets: created 0600 before anything is written into it (also when an older one was laxer)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


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

    def postgres_url(self, service: str) -> str:
        """The database of `service` (mlflow, prefect), as its own role."""
        s = self.state
        return (f"postgresql://{service}:{s['secrets'][f'pg_{service}']}@{s['host']}:{s['ports']['postgres']}/"
                f"{service}")

    @property
    def env(self) -> dict[str, str]:
        """What a client of the team needs (team.env): the addresses and the credentials."""
        return self.account_env(MLFLOW_ADMIN)

    def account_env(self, account: str) -> dict[str, str]:
        """team.env's variables with the MLflow account `account` (admin, run, promoter)."""
        secrets_ = self.state["secrets"]
        return {"MLFLOW_TRACKING_URI": self.mlflow_uri, "MLFLOW_TRACKING_USERNAME": account,
                "MLFLOW_TRACKING_PASSWORD": secrets_[f"mlflow_{account}"], "PREFECT_API_URL": self.prefect_api_url,
                "PREFECT_API_AUTH_STRING": secrets_["prefect_auth"], **accounts.ROLE_ENV.get(account, {})}

    def up(self) -> dict[str, str]:
        if any(group_alive(pid) for pid in self.state.get("pids", {}).values()):
            raise RuntimeError(f"team servers from {self.dir} are running: run `down` first")
        self.down()  # what a crashed earlier `up` on this DIR left (a PostgreSQL, a /tmp dir)
        for sub in ("logs", "artifacts"):  # a fresh database: fresh artifacts and logs too
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        (self.dir / "logs").mkdir(parents=True)
        ports = dict(zip(("postgres", "mlflow", "prefect"), free_ports(self.host, 3)))
        self.state = {"host": self.host, "ports": ports, "pids": {}, "secrets": new_secrets()}
        try:
            self._start_postgres()
            self._spawn("mlflow"), self._spawn("prefect")  # both migrate at once: the waits overlap
            self._wait("mlflow"), self._wait("prefect")
            accounts.create_accounts(self.mlflow_uri, (MLFLOW_ADMIN, self.state["secrets"]["mlflow_admin"]),
                                     {a: self.state["secrets"][f"mlflow_{a}"] for a in accounts.ACCOUNTS})
        except BaseException:
            self.down()
            raise
        write_private(self.dir / "team.env", accounts.env_text(self.env))
        for account, path in accounts.account_files(self.dir).items():
            write_private(path, accounts.env_text(self.account_env(account)))
        return self.env

    def down(self) -> None:
        for name in ("prefect", "mlflow"):
            self._stop(name)
        self._stop_postgres()
        for path in [self.dir / "team.env", *accounts.account_files(self.dir).values()]:
            path.unlink(missing_ok=True)
        (self.dir / AUTH_DB).unlink(missing_ok=True)   # its accounts went with the databases
        if self.state:
            self.state.pop("secrets", None)  # what they protected is gone
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
        """state.json holds the secrets: written 0600 (write_private)."""
        write_private(self.dir / "state.json", json.dumps(self.state, indent=2))

    def _start_postgres(self) -> None:
        root = postgres.make_root()
        self.state["pg_root"] = str(root)
        self._save()
        port = self.state["ports"]["postgres"]
        self._remember("postgres", postgres.start(root, self.host, port))
        postgres.create_service_databases(root, port, {s: self.state["secrets"][f"pg_{s}"]
                                                       for s in postgres.SERVICES})

    def _stop_postgres(self) -> None:
        root = Path(self.state.get("pg_root") or "/nonexistent")
        pid_file = root / "data" / "postmaster.pid"
        recorded = ProcessId.from_json(self.state.get("procs", {}).pop("postgres", None))
        if not postgres.stop(root):   # hung or half dead: the postmaster leads its own group (pg_ctl setsid()s)
            # the pid in postmaster.pid may be stale (a postmaster killed -9): only the one we started
            if pid_file.exists() and self._is_ours("postgres", recorded, int(pid_file.read_text().split()[0])):
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
        secrets_ = self.state["secrets"]
        if name == "mlflow":
            # Secrets (store URI with its password, admin password, Flask key) go by environment, not argv: argv is
            # visible in ps. The auth database is a file here: no password in the auth config file.
            # No job runner: it forks ~7 huey consumers (GenAI jobs nerflow never uses) and leaves a /dev/shm dir.
            # Each request's password check is a PBKDF2 hash (~0.4 s of a busy core): cached for a minute after a
            # success. With one worker a password changed through the API is seen at once (MLflow's basic_auth.ini).
            config = self.dir / "mlflow-auth.ini"
            config.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{self.dir / AUTH_DB}\n"
                              f"admin_username = {MLFLOW_ADMIN}\nauth_cache_ttl_seconds = 60\n")
            env.update(MLFLOW_BACKEND_STORE_URI=self.postgres_url("mlflow"), MLFLOW_DISABLE_TELEMETRY="true",
                       MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_AUTH_CONFIG_PATH=str(config),
                       MLFLOW_AUTH_ADMIN_USERNAME=MLFLOW_ADMIN, MLFLOW_AUTH_ADMIN_PASSWORD=secrets_["mlflow_admin"],
                       MLFLOW_FLASK_SERVER_SECRET_KEY=secrets_["flask_key"],
                       NERFLOW_PROMOTERS=",".join(accounts.PROMOTERS))
            # nerflow-roles (infra/mlflow-roles): basic-auth plus "only promoters move @champion or write its history"
            return [self.python, "-m", "mlflow", "server", "--app-name", "nerflow-roles", "--serve-artifacts",
                    "--artifacts-destination", str(self.dir / "artifacts"), "--host", self.host, "--port", port,
                    "--workers", "1"], env
        env.update(PREFECT_SERVER_DATABASE_CONNECTION_URL=self.postgres_url("prefect").replace(
            "postgresql://", "postgresql+asyncpg://"), PREFECT_SERVER_API_AUTH_STRING=secrets_["prefect_auth"],
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
                                   f"{postgres.log_tail(self.dir / 'logs' / f'{name}.log')}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{name} server not healthy at {url} after {START_TIMEOUT[name]:.0f} s; log tail:\n"
                           f"{postgres.log_tail(self.dir / 'logs' / f'{name}.log')}")

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
