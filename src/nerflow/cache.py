"""Stage outputs in folders keyed by content, written atomically, trusted only when their manifest checks out.

A stage's key hashes everything that determines its output: the inputs' content hashes, the config section it
reads, the keys of the stages before it, and its code (the nerflow modules it runs and the library versions).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

from nerflow.config import hash_json

MANIFEST = "manifest.json"
SRC = Path(__file__).parent


def code_fingerprint(modules: list[str], packages: list[str]) -> str:
    """The source of the nerflow modules a stage runs plus the versions of the libraries it uses."""
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode())
        h.update((SRC / f"{name}.py").read_bytes())
    for pkg in sorted(packages):
        h.update(f"{pkg}=={importlib.metadata.version(pkg)}".encode())
    return h.hexdigest()


def stage_key(stage: str, parts: dict) -> str:
    return hash_json({"stage": stage, **parts})[:24]


def _file_list(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def lookup(root: Path, stage: str, key: str) -> Path | None:
    """The complete output of (stage, key), or None. Missing or resized files make an entry untrustworthy."""
    folder = root / stage / key
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return folder if manifest.get("files") == _file_list(folder) else None


@contextlib.contextmanager
def stage_output(root: Path, stage: str, key: str, parts: dict | None = None) -> Iterator[Path]:
    """Yield a temp folder to write into; on success add the manifest and move it into place in one rename."""
    final = root / stage / key
    tmp = root / stage / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        (tmp / MANIFEST).write_text(json.dumps({"stage": stage, "key": key, "created": time.time(),
                                                "parts": parts or {}, "files": _file_list(tmp)}, indent=1))
        if final.exists():  # an incomplete or stale folder under the same key: replace it
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
