"""Local team servers: PostgreSQL (Debian's binaries), `mlflow server` and `prefect server start` on it, on free
ports of one host address, no docker. Importable (tests: TeamServers) and a CLI: `python infra/team.py
up|down|env|wipe --state-dir DIR`. Everything lives in DIR (state.json, team.env, logs/, artifacts/, prefect-home/,
postgres/; as root, the cluster goes to a /var/tmp dir when the `postgres` user cannot reach DIR).

`down` stops the servers and keeps their data; the next `up` starts them on it, with the same secrets and accounts.
Only `wipe` deletes a team, confirmed and never while it runs (infra/team_state.py).

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
import team_state  # noqa: E402
from team_accounts import new_secrets, write_private  # noqa: E402
from team_commands import MLFLOW_ADMIN, server_command  # noqa: E402
from team_processes import free_ports, is_ours, port_open, stop_group  # noqa: E402 (tests use port_open)

from nerflow.processes import ProcessId  # noqa: E402

START_TIMEOUT = {"mlflow": 180.0, "prefect": 360.0}  # first start migrates both schemas on 2 busy cores
HEALTH_PATH = {"mlflow": "/health", "prefect": "/api/health"}
SERVERS = ("postgres", "mlflow", "prefect")


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
                "PREFECT_API_AUTH_STRING": secrets_["prefect_auth"], **self.tune_env(),
                **accounts.ROLE_ENV.get(account, {})}

    def tune_env(self) -> dict[str, str]:
        """Where `nerflow tune` keeps its studies: a database and role of their own (Optuna and MLflow both keep
        their schema version in alembic's default table; a team started before this existed has none)."""
        if "pg_optuna" not in self.state["secrets"]:
            return {}
        return {"NERFLOW_TUNE_STORAGE": "postgresql+psycopg2://" + self.postgres_url("optuna").split("://", 1)[1]}

    def up(self) -> dict[str, str]:
        """Start the team on what this state dir keeps (a new, empty team the first time); a team already running
        from it is left as it is (`running`)."""
        if self.running():
            return self.env
        self.down()  # what a crashed earlier `up` or a dead server left running: stopped, its data kept
        root = Path(self.state["pg_root"]) if self.state.get("pg_root") else None
        kept = root is not None and postgres.has_cluster(root)
        team_state.refuse_partial(self.dir, self.state, kept)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        ports = self.state.get("ports", {})
        if not (kept and self.state.get("host") == self.host and ports and
                not any(port_open(self.host, p) for p in ports.values())):   # the same addresses when free
            ports = dict(zip(("postgres", "mlflow", "prefect"), free_ports(self.host, 3)))
        self.state = {"host": self.host, "ports": ports, "pids": {},
                      "secrets": self.state["secrets"] if kept else new_secrets(),
                      **({"pg_root": str(root)} if kept else {})}
        try:
            self._start_postgres(new=not kept)
            self._spawn("mlflow"), self._spawn("prefect")  # both migrate at once: the waits overlap
            self._wait("mlflow"), self._wait("prefect")
            # kept: the accounts exist and keep their passwords (one changed through MLflow's API included)
            accounts.create_accounts(self.mlflow_uri, (MLFLOW_ADMIN, self.state["secrets"]["mlflow_admin"]),
                                     {a: self.state["secrets"][f"mlflow_{a}"] for a in accounts.ACCOUNTS})
        except BaseException:
            self.down()
            if not kept:   # a new team that never came up: nothing in it to keep, the next `up` starts afresh
                team_state.delete(self.dir, self.state, keep=("logs", "state.json"))   # logs: for a post-mortem
                self.state = {k: self.state[k] for k in ("host", "ports", "pids")}
                self._save()
            raise
        write_private(self.dir / "team.env", accounts.env_text(self.env))
        for account, path in accounts.account_files(self.dir).items():
            write_private(path, accounts.env_text(self.account_env(account)))
        return self.env

    def alive(self) -> list[str]:
        """The servers of this state that run, each provably the one it started."""
        procs = self.state.get("procs", {})
        return [name for name in SERVERS if is_ours(name, ProcessId.from_json(procs.get(name)))]

    def running(self) -> bool:
        return len(self.alive()) == len(SERVERS)

    def down(self) -> None:
        """Stop the servers; keep everything they store (team_state: only `wipe` deletes it)."""
        for name in ("prefect", "mlflow"):
            self._stop(name)
        self._stop_postgres()
        for path in [self.dir / "team.env", *accounts.account_files(self.dir).values()]:
            path.unlink(missing_ok=True)   # they point at servers that no longer answer: `up` writes them again
        if self.state:
            self._save()

    def wipe(self) -> None:
        """Delete the team: its cluster, artifacts, accounts, secrets and logs. Refused while a server runs."""
        self.refuse_while_running()
        team_state.delete(self.dir, self.state)
        self.state = {}

    def refuse_while_running(self) -> None:
        alive = self.alive()
        if alive:
            raise RuntimeError(f"team servers from {self.dir} are running ({', '.join(alive)}): stop them first "
                               f"(make team-down, or `python infra/team.py down --state-dir {self.dir}`)")

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

    def _start_postgres(self, new: bool) -> None:
        root = postgres.cluster_root(self.dir) if new else Path(self.state["pg_root"])
        self.state["pg_root"] = str(root)
        self._save()
        port = self.state["ports"]["postgres"]
        self._remember("postgres", postgres.start(root, self.host, port))
        if new:   # a kept cluster has its roles, databases and passwords: nothing to create, nothing to reset
            postgres.create_service_databases(root, port, {s: self.state["secrets"][f"pg_{s}"]
                                                           for s in postgres.SERVICES})

    def _stop_postgres(self) -> None:
        """`pg_ctl stop`; the cluster itself stays where state.json's pg_root says (`wipe` deletes it)."""
        root = Path(self.state.get("pg_root") or "/nonexistent")
        pid_file = root / "data" / "postmaster.pid"
        recorded = ProcessId.from_json(self.state.get("procs", {}).pop("postgres", None))
        if not postgres.stop(root):   # hung or half dead: the postmaster leads its own group (pg_ctl setsid()s)
            # the pid in postmaster.pid may be stale (a postmaster killed -9): only the one we started
            if pid_file.exists() and is_ours("postgres", recorded, int(pid_file.read_text().split()[0])):
                stop_group(recorded.pid, kill=True)
        if (root / "postgres.log").exists() and (self.dir / "logs").is_dir():
            shutil.copyfile(root / "postgres.log", self.dir / "logs" / "postgres.log")  # readable next to the others

    def _spawn(self, name: str) -> None:
        """Own session: a test's Ctrl-C does not reach the server, and its pid is the group to stop."""
        cmd, env = server_command(self, name)
        with open(self.dir / "logs" / f"{name}.log", "ab") as log:
            # cwd=DIR: the repo's prefect.toml and a .env there must not configure the server.
            proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self.state["pids"][name] = proc.pid
        self._remember(name, proc.pid)

    def _remember(self, name: str, pid: int) -> None:
        """Record the server's identity, read after its exec (ProcessId.after_exec: read at once, the command line
        was sometimes empty, the record matched nothing, and `down` left that server running)."""
        found = ProcessId.after_exec(pid) or ProcessId(pid, 0.0, ())   # one already dead: an identity nothing matches
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
        elif is_ours(name, recorded, pid):
            stop_group(recorded.pid, kill=kill)
        if name in self.procs:
            proc = self.procs.pop(name)
            proc.kill()  # a no-op unless it survived its group being stopped
            proc.wait()  # reap the group leader we started
        if self.state:
            self._save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "env", "wipe"],
                        help="down keeps every model, run, artifact and account; wipe deletes them (asks first)")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-ui", action="store_true", help="Prefect server without its UI (tests)")
    parser.add_argument("--fast-services", action="store_true", help="short Prefect service loops (tests)")
    parser.add_argument("--yes", action="store_true", help="wipe without asking (scripts)")
    args = parser.parse_args(argv)
    team = TeamServers(args.state_dir, host=args.host, fast_services=args.fast_services, ui=not args.no_ui)
    if args.command == "down":
        team.down()
        return 0
    if args.command == "wipe":
        return wipe(team, args.yes)
    if args.command == "up":
        alive = team.alive()
        if len(alive) == len(SERVERS):
            print(f"team servers from {team.dir} are already running (MLflow {team.mlflow_uri}, Prefect "
                  f"{team.prefect_api_url}): nothing started", file=sys.stderr)
        elif alive:
            print(f"team.py up: {', '.join(s for s in SERVERS if s not in alive)} of {team.dir} not running: "
                  f"stopping {', '.join(alive)} and starting the team again on its kept data", file=sys.stderr)
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


def wipe(team: TeamServers, yes: bool) -> int:
    """Refused while a server runs (before asking anything), then only when confirmed."""
    if not team.dir.exists():
        print(f"team.py wipe: nothing to wipe in {team.dir}", file=sys.stderr)
        return 0
    try:
        team.refuse_while_running()
        if not team_state.confirmed(team.dir, yes):
            print(f"team.py wipe: not confirmed; the team in {team.dir} is kept", file=sys.stderr)
            return 1
        team.wipe()
    except RuntimeError as e:
        print(f"team.py wipe: {e}", file=sys.stderr)
        return 1
    print(f"team.py wipe: the team in {team.dir} is deleted; the next `up` starts an empty one", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
