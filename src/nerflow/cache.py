"""Stage outputs in folders keyed by content, written atomically, trusted only when their manifest checks out.

A stage's key hashes everything that determines its output: the inputs' content hashes, the config section it
reads, the keys of the stages before it, and its code (the nerflow modules it runs and the library versions).
"""
from __future__ import annotations

import contextlib
import dataclasses
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


def code_fingerprint(modules: list[str], packages: list[str], files: list[Path] = ()) -> str:
    """The source of the nerflow modules a stage runs (and any further `files`, e.g. its task) plus the versions
    of the libraries it uses."""
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode())
        h.update((SRC / f"{name}.py").read_bytes())
    for path in sorted(files):
        h.update(path.name.encode())
        h.update(path.read_bytes())
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
    """Yield a temp folder to write into; on success add the manifest and move it into place in one rename.

    A complete entry already under this key is never replaced: another process (or this stage's forced
    recompute) may be reading it, and a folder vanishing under a reader is worse than keeping an output of the
    same key. The new output is discarded then. Only an incomplete, untrustworthy folder is moved aside."""
    final = root / stage / key
    tmp = root / stage / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        (tmp / MANIFEST).write_text(json.dumps({"stage": stage, "key": key, "created": time.time(),
                                                "parts": parts or {}, "files": _file_list(tmp)}, indent=1))
        if lookup(root, stage, key) is not None:
            return                                   # keep the existing complete entry; the finally drops tmp
        if final.exists() or final.is_symlink():
            discard(final)
        try:
            tmp.rename(final)
        except OSError:
            if lookup(root, stage, key) is None:
                raise
            # another writer (not holding the stage lock) put a complete entry there meanwhile: keep that one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def discard(path: Path) -> None:
    """Rename first, then delete: a half-deleted folder never sits under a key's name looking complete. For an
    entry no reader can be using (its own stage's record, replaced under the run lock)."""
    trash = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    path.rename(trash)
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class Entry:
    stage: str
    key: str
    path: Path
    bytes: int
    modified: float
    complete: bool        # False: a training work folder (checkpoints of an unfinished run)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_entries(root: Path) -> list[Entry]:
    """Every stage output (complete) and training work folder (partial) under the cache root, newest first."""
    entries = []
    for stage_dir in sorted(p for p in Path(root).iterdir() if p.is_dir() and p.name not in ("models", "locks")) \
            if Path(root).is_dir() else []:
        for folder in stage_dir.iterdir():
            if not folder.is_dir() or folder.name.endswith(".tmp"):
                continue
            key = folder.name.removesuffix(".work")
            entries.append(Entry(stage_dir.name, key, folder, folder_size(folder), folder.stat().st_mtime,
                                 not folder.name.endswith(".work")))
    return sorted(entries, key=lambda e: -e.modified)


def select_prunable(entries: list[Entry], keep: int | None, older_than_s: float | None, protected: set[str],
                    now: float | None = None) -> list[Entry]:
    """Entries to delete: beyond the newest `keep` per stage and/or older than `older_than_s`, never a protected key."""
    now = now or time.time()
    doomed, seen = [], {}
    for e in entries:  # newest first
        seen[e.stage] = seen.get(e.stage, 0) + 1
        too_many = keep is not None and seen[e.stage] > keep
        too_old = older_than_s is not None and now - e.modified > older_than_s
        if (too_many or too_old) and e.key not in protected:
            doomed.append(e)
    return doomed


def remove(entry: Entry) -> None:
    """Rename first, then delete: a half-deleted folder never looks like a complete entry."""
    discard(entry.path)
