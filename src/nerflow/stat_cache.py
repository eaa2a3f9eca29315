"""File hashing, and a stat cache that lets the scheduled "anything to do?" check skip files that did not change.

`file_sha256` is the one function that hashes a data or model file for a plan. Inside `trusting_unchanged(cache_dir)`
(flows/scheduled.py wraps its plan in it, nothing else does) it first asks the cache file `<cache_dir>/stat-cache.json`:
a file whose (device, inode, size, mtime_ns, ctime_ns) equal those recorded when it was last hashed keeps that hash.
Everywhere else, the pipeline's stage keys included, content is always hashed.

Why these fields and not mtime alone: `cp -p`, `rsync -t` and `touch -d` set mtime to anything, but the kernel sets
ctime to "now" on every change (content, utime, chmod, rename) and no user call can set it back; a file replaced by
rename has another inode. Size is a cheap extra. What stays is the "racily clean" case (git's name): a file changed
twice within one tick of a coarse filesystem clock (1 s on ext3/HFS+, 2 s on FAT, NFS servers vary) keeps the same
stat. So a hash is recorded only when the file's mtime and ctime were already RACY_NS older than the moment hashing
started, and the file's stat did not move while it was hashed; a younger file is hashed again on the next check
(until it is old enough to be recorded). This assumes the filesystem's clock is within RACY_NS of this host's.

The cache file is only ever a hint: it is written atomically (temp file, rename), carries a checksum of its entries,
and anything unreadable, garbled or from another version means "hash everything" (never an error, never a trusted
garbled entry). Writers on one host merge with what is on disk; a lost update only costs a re-hash. It is bounded:
entries not used for FORGET_AFTER_S go, and at most MAX_ENTRIES stay (the most recently used).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

CACHE_FILE = "stat-cache.json"   # a file at the cache root: `nerflow cache ls/prune` read only the stage folders
VERSION = 1
RACY_NS = 2_000_000_000          # coarser than any filesystem's timestamp tick (FAT's 2 s)
MAX_ENTRIES = 50_000
FORGET_AFTER_S = 30 * 86_400
SEEN_EVERY_S = 86_400            # how stale an entry's "last used" may get before a check writes it anew
_HEX64 = re.compile(r"[0-9a-f]{64}")

Signature = tuple[int, int, int, int, int]   # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns
_ACTIVE: ContextVar[StatCache | None] = ContextVar("nerflow_stat_cache", default=None)


def now_ns() -> int:
    return time.time_ns()


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of the file's content; inside `trusting_unchanged`, the recorded one when its stat is unchanged."""
    cache = _ACTIVE.get()
    return cache.sha256(Path(path)) if cache is not None else _hash_file(Path(path))


@contextlib.contextmanager
def trusting_unchanged(cache_dir: Path | str) -> Iterator[StatCache]:
    """File hashes in this block (this thread's context) come from the stat cache of `cache_dir` where the file is
    unchanged; what was learnt is saved on the way out (not after an error: then nothing learnt is needed). A check
    that found every file unchanged writes nothing."""
    cache = StatCache(Path(cache_dir) / CACHE_FILE)
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)
    cache.save()


@dataclass
class Entry:
    signature: Signature
    sha256: str
    hashed_ns: int   # when hashing started (this host's clock): the racy check is made again on every read
    seen_s: int      # when last hashed or trusted (to the day): to forget files no check asks for any more

    def to_json(self) -> list:
        return [*self.signature, self.sha256, self.hashed_ns, self.seen_s]

    @classmethod
    def from_json(cls, value: object) -> Entry | None:
        """None for anything but exactly the shape `to_json` writes, with a plausible, non-racy signature."""
        if not isinstance(value, list) or len(value) != 8:
            return None
        *numbers, digest, hashed_ns, seen_s = value
        ints = [*numbers, hashed_ns, seen_s]
        if not all(type(n) is int and n >= 0 for n in ints) or not isinstance(digest, str) \
                or not _HEX64.fullmatch(digest):
            return None
        entry = cls(tuple(numbers), digest, hashed_ns, seen_s)
        return None if _racy(entry.signature, hashed_ns) else entry


def _racy(signature: Signature, hashed_ns: int) -> bool:
    """Changed too close to (or after) the moment it was hashed for its stat to tell a later change apart."""
    return max(signature[3], signature[4]) >= hashed_ns - RACY_NS


class StatCache:
    """The entries of one cache file, keyed by absolute path. `stat` and `clock` are the OS's; tests replace them to
    play a coarse-timestamp filesystem. `hashed` and `trusted` count this instance's files of each kind."""

    def __init__(self, path: Path, stat: Callable[[Path], os.stat_result] = os.stat,
                 clock: Callable[[], int] | None = None):
        self.path, self._stat, self._clock = Path(path), stat, clock or (lambda: now_ns())
        self._entries = load(self.path)
        self._touched: dict[str, Entry | None] = {}   # what this instance learnt: a new entry, or None (forget it)
        self.hashed = self.trusted = 0

    def sha256(self, path: Path) -> str:
        key = os.path.abspath(path)
        before = self._signature(path)
        entry = self._entries.get(key)
        if entry is not None and entry.signature == before:
            self.trusted += 1
            now_s = self._clock() // 1_000_000_000
            if entry.seen_s < now_s - SEEN_EVERY_S:   # not a write per tick just to say "still used"
                entry.seen_s = now_s
                self._touched[key] = entry
            return entry.sha256
        started = self._clock()
        digest = _hash_file(path)
        self.hashed += 1
        # moved while being read, or too young to tell a later change apart: not recorded, hashed again next time
        fresh = None if self._signature(path) != before or _racy(before, started) else \
            Entry(before, digest, started, started // 1_000_000_000)
        self._touched[key] = fresh
        if fresh is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = fresh
        return digest

    def _signature(self, path: Path) -> Signature:
        st = self._stat(path)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def save(self) -> None:
        """Merge what this instance learnt into the file on disk and replace it atomically. Best effort: a cache
        that cannot be written (read-only, full disk) only means hashing again next time."""
        if not self._touched:
            return
        merged = load(self.path)   # another check may have saved meanwhile: keep its entries
        for key, entry in self._touched.items():
            if entry is None:
                merged.pop(key, None)
            else:
                merged[key] = entry
        now_s = self._clock() // 1_000_000_000
        kept = sorted(((k, e) for k, e in merged.items() if e.seen_s >= now_s - FORGET_AFTER_S),
                      key=lambda item: item[1].seen_s, reverse=True)[:MAX_ENTRIES]
        entries = {k: e.to_json() for k, e in sorted(kept)}
        text = json.dumps({"version": VERSION, "checksum": _checksum(entries), "entries": entries})
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _checksum(entries: dict) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load(path: Path) -> dict[str, Entry]:
    """The entries of a cache file; {} for a missing, unreadable, garbled or other-version file. A file whose
    checksum does not match is dropped whole: a flipped digit in a hash would otherwise look like a valid entry."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("entries"), dict) \
            or data.get("checksum") != _checksum(data["entries"]):
        return {}
    loaded = {}
    for key, value in data["entries"].items():
        entry = Entry.from_json(value)
        if entry is not None and isinstance(key, str) and os.path.isabs(key):
            loaded[key] = entry
    return loaded
