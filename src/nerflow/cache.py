"""Stage outputs keyed by content, written atomically, trusted only when their manifest checks out.

Layout of `<root>/<stage>/`: each output is a *generation* folder `.generations/<key>@<id>/`; the key's *pointer*
`<key>` is a symlink to the generation that is current. A computed output is written into a temp folder, gets its
manifest, is renamed to a new generation, and then the pointer moves to it in one atomic rename. So:
- a forced or rerun stage really replaces the output: its new generation becomes the key's, and everything after it
  reads the new one;
- a reader resolves the pointer once (`lookup`) and keeps using that generation, which is never changed or deleted
  under it: older generations stay until `nerflow cache prune` removes the ones no pointer references and no live
  run names (its lock lists the generations it uses);
- two processes computing one key without `force` still end with one entry: the second keeps the first's.
Folders written before generations existed (a real folder named `<key>`) are still read as an entry.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from nerflow import faults
from nerflow.config import hash_json

MANIFEST = "manifest.json"
GENERATIONS = ".generations"


def stage_key(stage: str, parts: dict) -> str:
    return hash_json({"stage": stage, **parts})[:24]


def _file_list(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def verified(folder: Path) -> bool:
    """A complete output: its manifest lists exactly the files there, with their sizes."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("files") == _file_list(folder)


def pointer(root: Path, stage: str, key: str) -> Path:
    return Path(root) / stage / key


def resolve(root: Path, stage: str, key: str) -> Path | None:
    """The folder the key's pointer names now (a generation, or a folder from before generations), or None."""
    link = pointer(root, stage, key)
    if link.is_symlink():
        return link.parent / os.readlink(link)
    return link if link.is_dir() else None


def lookup(root: Path, stage: str, key: str) -> Path | None:
    """The complete output of (stage, key), resolved once: the generation to keep reading, or None. Missing or
    resized files make an entry untrustworthy."""
    folder = resolve(root, stage, key)
    return folder if folder is not None and verified(folder) else None


def manifests(root: Path, stage: str) -> list[Path]:
    """The manifests of every output of a stage, current or not (`explain` compares with the newest)."""
    folder = Path(root) / stage
    return [*folder.glob(f"{GENERATIONS}/*/{MANIFEST}"), *folder.glob(f"*/{MANIFEST}")]


@contextlib.contextmanager
def stage_output(root: Path, stage: str, key: str, parts: dict | None = None, replace: bool = False
                 ) -> Iterator[Path]:
    """Yield a temp folder to write into; on success add the manifest, make it a generation and point the key at
    it. `replace` (a forced stage): the new generation becomes the key's whatever was there. Otherwise a complete
    entry that appeared meanwhile (a concurrent writer) is kept and the new output discarded. Afterwards
    `lookup(root, stage, key)` is the entry to read."""
    stage_dir = Path(root) / stage
    tmp = stage_dir / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        (tmp / MANIFEST).write_text(json.dumps({"stage": stage, "key": key, "created": time.time(),
                                                "parts": parts or {}, "files": _file_list(tmp)}, indent=1))
        if not replace and lookup(root, stage, key) is not None:
            return                                   # keep the existing complete entry; the finally drops tmp
        # the output is complete in a hidden temp folder, the key names nothing: the next run computes the stage
        # again (register finds its version by key); the temp folder stays behind, unread
        faults.point("cache.output-written", stage)
        generation = stage_dir / GENERATIONS / f"{key}@{uuid.uuid4().hex[:8]}"
        generation.parent.mkdir(exist_ok=True)
        tmp.rename(generation)
        point(root, stage, key, generation)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def point(root: Path, stage: str, key: str, generation: Path) -> None:
    """Move the key's pointer to `generation` in one rename. A folder from before generations under the key is
    first moved among the generations (not deleted: a reader may be inside it)."""
    link = pointer(root, stage, key)
    if link.is_dir() and not link.is_symlink():
        legacy = link.parent / GENERATIONS / f"{key}@legacy-{uuid.uuid4().hex[:6]}"
        legacy.parent.mkdir(exist_ok=True)
        link.rename(legacy)
    elif link.exists() and not link.is_symlink():
        discard(link)                                # a stray file under the key's name
    new_link = link.with_name(f".{key}.{uuid.uuid4().hex[:8]}.lnk")
    os.symlink(os.path.relpath(generation, link.parent), new_link)
    os.replace(new_link, link)


def discard(path: Path) -> None:
    """Rename first, then delete: a half-deleted folder never sits under a key's name looking complete."""
    trash = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    path.rename(trash)
    remove_path(trash)


@dataclasses.dataclass(frozen=True)
class Entry:
    stage: str
    key: str
    path: Path            # the folder: a generation, a folder from before generations, or a training work folder
    bytes: int
    modified: float
    complete: bool        # False: a training work folder (checkpoints of an unfinished run)
    current: bool = True  # False: a generation no pointer names any more (replaced by a forced recompute)

    @property
    def generation(self) -> str:
        return self.path.name


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_entries(root: Path) -> list[Entry]:
    """Every stage output (the current generation of each key, and replaced generations), and training work folder
    (partial) under the cache root, newest first."""
    entries = []
    for stage_dir in sorted(p for p in Path(root).iterdir() if p.is_dir() and p.name not in ("models", "locks")) \
            if Path(root).is_dir() else []:
        named = set()
        for item in stage_dir.iterdir():
            if item.name.startswith("."):
                continue
            if item.is_symlink():
                target = resolve(root, stage_dir.name, item.name)
                if target is None or not target.is_dir():
                    continue
                named.add(target.name)
                entries.append(Entry(stage_dir.name, item.name, target, folder_size(target), target.stat().st_mtime,
                                     True))
            elif item.is_dir():
                key = item.name.removesuffix(".work")
                entries.append(Entry(stage_dir.name, key, item, folder_size(item), item.stat().st_mtime,
                                     not item.name.endswith(".work")))
        for generation in (stage_dir / GENERATIONS).glob("*") if (stage_dir / GENERATIONS).is_dir() else []:
            if generation.name not in named and generation.is_dir() and not generation.name.startswith("."):
                key = generation.name.partition("@")[0]
                entries.append(Entry(stage_dir.name, key, generation, folder_size(generation),
                                     generation.stat().st_mtime, True, current=False))
    return sorted(entries, key=lambda e: -e.modified)


def leftovers(root: Path) -> list[tuple[str, str, Path]]:
    """(stage, key, path) of what a killed write or deletion left hidden in the stage folders: a temp output folder
    (`.KEY.ID.tmp`, from stage_output), a pointer not yet renamed into place (`.KEY.ID.lnk`, from point), a folder
    renamed for deletion (`.NAME.ID.tmp`, from discard). Lookups never read them; pruning removes those whose key no
    live process holds."""
    found = []
    for stage_dir in (p for p in Path(root).iterdir() if p.is_dir() and p.name not in ("models", "locks")) \
            if Path(root).is_dir() else []:
        generations = stage_dir / GENERATIONS
        for item in [*stage_dir.iterdir(), *(generations.iterdir() if generations.is_dir() else [])]:
            name = item.name
            if name.startswith(".") and name != GENERATIONS and name.endswith((".tmp", ".lnk")):
                key = name[1:].rsplit(".", 2)[0].partition("@")[0].removesuffix(".work")
                found.append((stage_dir.name, key, item))
    return sorted(found)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def select_prunable(entries: list[Entry], keep: int | None, older_than_s: float | None, protected: set[str],
                    now: float | None = None) -> list[Entry]:
    """Entries to delete: replaced generations that nothing uses; then current entries beyond the newest `keep` per
    stage and/or older than `older_than_s`. `protected`: keys and generation names never deleted (an aliased model's
    stage keys, what a live run holds)."""
    now = now or time.time()
    doomed, seen = [], {}
    for e in entries:  # newest first
        if e.key in protected or e.generation in protected:
            if e.current:
                seen[e.stage] = seen.get(e.stage, 0) + 1
            continue
        if not e.current:
            doomed.append(e)
            continue
        seen[e.stage] = seen.get(e.stage, 0) + 1
        too_many = keep is not None and seen[e.stage] > keep
        too_old = older_than_s is not None and now - e.modified > older_than_s
        if too_many or too_old:
            doomed.append(e)
    return doomed


def remove(entry: Entry) -> None:
    """Delete an entry: its pointer first (a lookup then finds nothing), then its folder."""
    stage_dir = entry.path.parent.parent if entry.path.parent.name == GENERATIONS else entry.path.parent
    link = stage_dir / entry.key
    if link.is_symlink() and (link.parent / os.readlink(link)).resolve() == entry.path.resolve():
        link.unlink()
    discard(entry.path)
