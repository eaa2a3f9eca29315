"""The team's PostgreSQL for infra/team.py: a cluster (Debian's binaries) kept across `down` and `up` in
STATE_DIR/postgres (or, as root when the postgres user cannot reach STATE_DIR, a /var/tmp dir; cluster_root), one
login role per server that owns that server's database and can reach no other, and pg_trgm (Prefect's migrations
need it, only a superuser may create it) created once, with the cluster, by the bootstrap superuser. The superuser
has no password: it logs in only over a unix socket that only postgres (and root) can reach."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SERVICES = ("mlflow", "prefect", "optuna")   # each: a role and a database of that name (optuna: `nerflow tune`)


def pg_bin() -> Path:
    """Newest Debian PostgreSQL (/usr/lib/postgresql/<major>/bin); install-debian-deps.sh puts it there."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL binaries not found in /usr/lib/postgresql: run infra/install-debian-deps.sh")
    return found[-1].parent


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def make_root(parent: str = "/tmp") -> Path:
    """pytest's tmp dirs are 0700 root: the cluster goes to a 0755 dir in `parent` that postgres owns."""
    root = Path(tempfile.mkdtemp(prefix="nerflow-pg-", dir=parent))
    return _own(root)


def _own(root: Path) -> Path:
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    return root


def cluster_root(state_dir: Path) -> Path:
    """Where a new team's cluster goes: STATE_DIR/postgres, kept with the rest of the team's state. As root the
    cluster runs as `postgres`, which must reach it: when it cannot search STATE_DIR (pytest's 0700 tmp dirs), a
    dir in /var/tmp instead (not /tmp: a tmpfs, or cleaned at boot, would lose the registry)."""
    if os.geteuid() == 0 and subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(state_dir)],
                                            capture_output=True).returncode:
        return make_root("/var/tmp")
    root = Path(state_dir) / "postgres"
    root.mkdir(parents=True)
    return _own(root)


def has_cluster(root: Path) -> bool:
    return (root / "data" / "PG_VERSION").is_file()


def pg(root: Path, tool: str, *args: str, **kw) -> None:
    """PostgreSQL refuses to run as root: then its tools run as the `postgres` user."""
    cmd = [str(pg_bin() / tool), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, **kw)
    if done.returncode:
        log = root / "postgres.log"
        raise RuntimeError(f"PostgreSQL: {tool} failed ({done.returncode}):\n{done.stdout}"
                           f"{done.stderr}\n{log_tail(log) if log.exists() else ''}")


def start(root: Path, host: str, port: int) -> int:
    """Start the cluster (initdb first when there is none yet: a new team); the postmaster's pid. Host and port
    are options of this start, not of the cluster: a kept cluster starts on whatever port `up` picked."""
    sock = root / "sock"
    if not has_cluster(root):
        pg(root, "initdb", "-D", str(root / "data"), "-U", "postgres", "--auth-local=trust",
           "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
    # Local connections are trusted: only postgres (and root) may reach the socket.
    sock.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres", "postgres")
    opts = (f"-c listen_addresses={host} -c port={port} -c unix_socket_directories={sock} "
            "-c unix_socket_permissions=0700")
    pg(root, "pg_ctl", "-D", str(root / "data"), "-l", str(root / "postgres.log"), "-o", opts,
       "-w", "-t", "60", "start", start_new_session=True)
    return int((root / "data" / "postmaster.pid").read_text().split()[0])


def create_service_databases(root: Path, port: int, passwords: dict[str, str]) -> None:
    """One role per server owning its database; CONNECT revoked from PUBLIC, so neither role opens the other's
    database. Passwords are token_urlsafe ([A-Za-z0-9_-]): safe inside a SQL literal."""
    sql = "".join(f"CREATE ROLE {s} LOGIN PASSWORD '{passwords[s]}'; CREATE DATABASE {s} OWNER {s};"
                  f"REVOKE ALL ON DATABASE {s} FROM PUBLIC;" for s in SERVICES)
    psql(root, port, "postgres", sql)
    psql(root, port, "prefect", "CREATE EXTENSION IF NOT EXISTS pg_trgm;")


def psql(root: Path, port: int, db: str, sql: str) -> None:
    """As the bootstrap superuser over the unix socket (trust); SQL on stdin keeps the passwords out of ps."""
    pg(root, "psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(root / "sock"), "-p", str(port), "-U", "postgres",
       "-d", db, "-f", "-", input=sql)


def stop(root: Path) -> bool:
    """`pg_ctl stop`; False when it failed (a hung or half-dead cluster: the caller kills what it started)."""
    if not (root / "data" / "postmaster.pid").exists():
        return True
    try:
        pg(root, "pg_ctl", "-D", str(root / "data"), "-m", "fast", "-w", "-t", "30", "stop")
    except RuntimeError:
        return False
    return True
