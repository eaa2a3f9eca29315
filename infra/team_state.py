"""What a local team keeps between `down` and `up`, and the one command that deletes it (`wipe`).

A team's state is its registry: the PostgreSQL cluster (every run, version, alias and champion history), the
artifact store, MLflow's accounts (mlflow-auth.db) and the secrets that open them (state.json). `down` stops the
servers and keeps all of it; `up` starts them again on it. Only `wipe` deletes it, and only when asked twice: the
state dir's name typed back (or `--yes`, for scripts), and never while a server runs.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

# Everything team.py writes in STATE_DIR (the cluster may live outside it: state.json's pg_root)
MADE_HERE = ("state.json", "team.env", "run.env", "promoter.env", "mlflow-auth.db", "mlflow-auth.ini", "logs",
             "artifacts", "prefect-home", "postgres")


def leftovers(state_dir: Path, state: dict) -> list[str]:
    """What an earlier team left in STATE_DIR that a new, empty cluster would not match: artifacts of versions it
    would not know, accounts whose passwords it would not have, a recorded cluster that is gone."""
    found = []
    if (state_dir / "artifacts").is_dir() and any((state_dir / "artifacts").iterdir()):
        found.append(f"artifacts in {state_dir / 'artifacts'}")
    if (state_dir / "mlflow-auth.db").exists():
        found.append(f"MLflow accounts in {state_dir / 'mlflow-auth.db'}")
    if state.get("pg_root"):
        found.append(f"state.json names the PostgreSQL cluster {state['pg_root']}, which holds none")
    return found


def refuse_partial(state_dir: Path, state: dict, kept_cluster: bool) -> None:
    """A kept cluster without the secrets that open it (a state.json of an older team.py, whose `down` dropped
    them), or a team's files without its cluster: starting would show an empty or unreachable registry."""
    if kept_cluster and not state.get("secrets"):
        raise RuntimeError(f"{state_dir}/state.json holds no passwords for the kept PostgreSQL cluster "
                           f"{state['pg_root']} (written by an older team.py); `python infra/team.py wipe "
                           f"--state-dir {state_dir}` deletes it and the next `up` starts an empty team")
    found = [] if kept_cluster else leftovers(state_dir, state)
    if found:
        raise RuntimeError(f"{state_dir} holds part of an earlier team ({'; '.join(found)}): restore it, or `python "
                           f"infra/team.py wipe --state-dir {state_dir}` to delete it and start an empty team")


def confirmed(state_dir: Path, yes: bool) -> bool:
    """--yes, or the state dir's name typed back (from a terminal or a pipe; nothing typed is a no)."""
    if yes:
        return True
    print(f"This deletes every registered model, version, alias, champion history, run, artifact and account of "
          f"the team in {state_dir}.\nType the state dir's name ({state_dir.name}) to confirm: ", end="",
          file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip() == state_dir.name


def delete(state_dir: Path, state: dict, keep: tuple[str, ...] = ()) -> None:
    """Remove what team.py made (the cluster wherever it is, the files in STATE_DIR but `keep`); STATE_DIR too
    once empty."""
    if state.get("pg_root"):
        shutil.rmtree(state["pg_root"], ignore_errors=True)
    for name in set(MADE_HERE) - set(keep):
        path = state_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    try:
        state_dir.rmdir()
    except OSError:   # gone already, or it holds files of someone else's: left as it is
        pass
