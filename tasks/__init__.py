"""Prefect tasks: thin adapters that call the library (nerflow.*) and log to MLflow. No Prefect import here."""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def sources() -> dict[str, list[Path]]:
    """Each stage's task file plus the shared plumbing: code too, hashed into the stage's cache key."""
    files = {stage: [_HERE / f"{stage}.py", _HERE / "stage.py"]
             for stage in ("validate", "tokenize", "train", "evaluate", "register", "promote")}
    files["promote"] += [_HERE / "champion.py"]
    return files
