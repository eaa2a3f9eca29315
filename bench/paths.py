"""Result files are committed (bench/results/): paths in them are written relative to the project, never as this
machine's absolute paths."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def portable(arg: str) -> str:
    """`arg` with an absolute path in it (alone or after `key=`) made relative to the project root."""
    key, sep, value = arg.rpartition("=") if "=" in arg and not arg.startswith("/") else ("", "", arg)
    if os.path.isabs(value):
        value = os.path.relpath(value, ROOT)
    return f"{key}{sep}{value}"
