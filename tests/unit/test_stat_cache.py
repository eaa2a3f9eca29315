"""The scheduled check's stat cache (nerflow.stat_cache): an unchanged file is not read again; any change a user can
make (content with mtime put back, a same-size replacement by rename, a change within one tick of a coarse clock) is
hashed again; a garbled cache file means hashing everything. The pipeline's stage keys never use it. Every hash is
counted at the real hashing function."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from nerflow import stat_cache
from nerflow.config import load_config
from nerflow.plan import make_plan
from nerflow.stat_cache import CACHE_FILE, StatCache, trusting_unchanged

from .test_plan import keys, project  # noqa: F401 - the plan's fixture: data files, a model folder, a config

LATER = 60 * 10**9   # "the check runs a minute after the files were written": they are no longer racily clean


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """The real hashing function, counted: the paths it read, in order."""
    read, real = [], stat_cache._hash_file

    def counted(path):
        read.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(stat_cache, "_hash_file", counted)
    return read


@pytest.fixture
def a_minute_later(monkeypatch):
    monkeypatch.setattr(stat_cache, "now_ns", lambda: stat_cache.time.time_ns() + LATER)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(cache_file: Path, path: Path, **kwargs) -> str:
    """One scheduled check of one file: load the cache, hash, save."""
    cache = StatCache(cache_file, **kwargs)
    digest = cache.sha256(path)
    cache.save()
    return digest


def test_an_unchanged_file_is_not_read_again(tmp_path, hashes, a_minute_later):
    f, cache_file = tmp_path / "train.txt", tmp_path / "cache" / CACHE_FILE
    f.write_bytes(b"John B-PER\n" * 1000)
    assert check(cache_file, f) == sha(f.read_bytes()) and hashes == ["train.txt"]
    written = (cache_file.stat().st_ino, cache_file.stat().st_mtime_ns)
    for _ in range(3):
        assert check(cache_file, f) == sha(f.read_bytes())
    assert hashes == ["train.txt"]
    # nothing learnt, nothing written (a save renames a new file in)
    assert (cache_file.stat().st_ino, cache_file.stat().st_mtime_ns) == written
    assert [p.name for p in cache_file.parent.iterdir()] == [CACHE_FILE]   # written by rename: no temp file left


def test_new_content_with_the_old_mtime_put_back_is_hashed_again(tmp_path, hashes, a_minute_later):
    """`cp -p` (shutil.copy2) of other content of the same size over the file, and a plain write followed by
    os.utime to the old mtime: mtime and size are as recorded, ctime is not."""
    f, other, cache_file = tmp_path / "train.txt", tmp_path / "other.txt", tmp_path / CACHE_FILE
    f.write_bytes(b"John B-PER\n")
    old = f.stat()
    check(cache_file, f)
    other.write_bytes(b"Anna B-LOC\n")
    os.utime(other, ns=(old.st_atime_ns, old.st_mtime_ns))
    shutil.copy2(other, f)   # writes into the same inode, then puts the source's mtime on it
    now = f.stat()
    assert (now.st_ino, now.st_size, now.st_mtime_ns) == (old.st_ino, old.st_size, old.st_mtime_ns)
    assert check(cache_file, f) == sha(b"Anna B-LOC\n") and len(hashes) == 2
    f.write_bytes(b"Bert B-ORG\n")
    os.utime(f, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert check(cache_file, f) == sha(b"Bert B-ORG\n") and len(hashes) == 3


def test_a_same_size_same_mtime_replacement_by_rename_is_hashed_again(tmp_path, hashes, a_minute_later):
    """rsync -t's way: a new file with the old mtime renamed over the old one (another inode, a new ctime)."""
    f, cache_file = tmp_path / "train.txt", tmp_path / CACHE_FILE
    f.write_bytes(b"John B-PER\n")
    old = f.stat()
    check(cache_file, f)
    new = tmp_path / ".train.txt.tmp"
    new.write_bytes(b"Anna B-LOC\n")
    os.utime(new, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(new, f)
    assert (f.stat().st_size, f.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert check(cache_file, f) == sha(b"Anna B-LOC\n") and len(hashes) == 2


class CoarseDisk:
    """A filesystem whose clock ticks once per 2 s (FAT): two writes within one tick leave the same stat."""

    def __init__(self, tick_ns: int):
        self.tick_ns = tick_ns

    def stat(self, path):
        size = os.stat(path).st_size
        return SimpleNamespace(st_dev=1, st_ino=7, st_size=size, st_mtime_ns=self.tick_ns, st_ctime_ns=self.tick_ns)


def test_a_racily_clean_file_is_hashed_again(tmp_path, hashes):
    """Hashed within RACY_NS of its last change, a file is not recorded: a second change inside the same clock tick
    (same stat) is still seen. Hashed later than that, the entry is trusted, which is what makes the check cheap."""
    f, tick = tmp_path / "train.txt", 1_000 * 10**9
    disk = CoarseDisk(tick)
    f.write_bytes(b"John B-PER\n")
    assert check(tmp_path / "racy.json", f, stat=disk.stat, clock=lambda: tick + 500_000_000) == sha(b"John B-PER\n")
    f.write_bytes(b"Anna B-LOC\n")   # same tick, same size: the same stat
    assert check(tmp_path / "racy.json", f, stat=disk.stat, clock=lambda: tick + 900_000_000) == sha(b"Anna B-LOC\n")
    assert len(hashes) == 2

    f.write_bytes(b"John B-PER\n")
    check(tmp_path / "old.json", f, stat=disk.stat, clock=lambda: tick + stat_cache.RACY_NS + 1)
    assert check(tmp_path / "old.json", f, stat=disk.stat, clock=lambda: tick + 10**12) == sha(b"John B-PER\n")
    assert len(hashes) == 3   # recorded once it was old enough, then trusted


def test_an_entry_written_racily_is_not_trusted_when_read(tmp_path, hashes):
    """The racy rule holds on reading too: an entry whose file changed within RACY_NS of its hashing (written by
    another version, or a clock that jumped) is ignored, whatever else is right about it."""
    f = tmp_path / "train.txt"
    f.write_bytes(b"John B-PER\n")
    st = f.stat()
    entries = {str(f): [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha(b"stale"),
                        st.st_ctime_ns + 1, 0]}
    (tmp_path / CACHE_FILE).write_text(json.dumps(
        {"version": stat_cache.VERSION, "checksum": stat_cache._checksum(entries), "entries": entries}))
    assert StatCache(tmp_path / CACHE_FILE, clock=lambda: st.st_ctime_ns + LATER).sha256(f) == sha(b"John B-PER\n")
    assert len(hashes) == 1


def garbled(text: str) -> list[str]:
    """A valid cache file, damaged in the ways a disk, a crash or a person can."""
    data = json.loads(text)
    path, entry = next(iter(data["entries"].items()))
    flipped = dict(data, entries={path: entry[:5] + [entry[5].replace(entry[5][0], "0" if entry[5][0] != "0"
                                                                      else "1", 1)] + entry[6:]})
    wrong_shape = {path: entry[:5]}
    return [text[: len(text) // 2], "\x00\xff garbage", "[]", json.dumps(flipped),
            json.dumps(dict(data, version=99)),
            json.dumps(dict(data, entries=wrong_shape, checksum=stat_cache._checksum(wrong_shape)))]


def test_a_garbled_cache_file_means_hashing_everything(tmp_path, hashes, a_minute_later):
    f, cache_file = tmp_path / "train.txt", tmp_path / CACHE_FILE
    f.write_bytes(b"John B-PER\n")
    check(cache_file, f)
    good = cache_file.read_text()
    for n, bad in enumerate(garbled(good), start=2):
        cache_file.write_text(bad, errors="surrogateescape")
        assert check(cache_file, f) == sha(b"John B-PER\n") and len(hashes) == n, bad
        assert stat_cache.load(cache_file), "saved whole again"
    cache_file.unlink()
    cache_file.mkdir()   # not even a file: nothing to read, nothing written, still no error
    assert check(cache_file, f) == sha(b"John B-PER\n")


def test_concurrent_checks_merge_and_the_file_stays_bounded(tmp_path, hashes, a_minute_later, monkeypatch):
    files = [tmp_path / f"{i}.txt" for i in range(5)]
    for i, f in enumerate(files):
        f.write_text(str(i))
    first, second = StatCache(tmp_path / CACHE_FILE), StatCache(tmp_path / CACHE_FILE)
    first.sha256(files[0])
    second.sha256(files[1])
    barrier = threading.Barrier(2)

    def save(cache):
        barrier.wait()
        cache.save()

    threads = [threading.Thread(target=save, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # both saved; the later one merged the earlier one's entry (or overwrote it: then one file is hashed again)
    assert set(stat_cache.load(tmp_path / CACHE_FILE)) & {str(files[0]), str(files[1])}
    monkeypatch.setattr(stat_cache, "MAX_ENTRIES", 3)
    for f in files:
        check(tmp_path / CACHE_FILE, f)
    assert len(stat_cache.load(tmp_path / CACHE_FILE)) == 3


def test_the_scheduled_plan_trusts_the_cache_and_the_pipeline_plan_never_does(project, hashes,  # noqa: F811
                                                                            a_minute_later):
    """A forged entry (right stat, right checksum, wrong hash) stands for a file the cache would wrongly trust: the
    scheduled check's plan believes it, the pipeline's plan hashes the content. And a `cp -p` replacement with new
    content changes the stage keys of both."""
    cfg = load_config(project / "cfg.yaml", [])
    train = project / "data" / "train.txt"
    first = keys(make_plan(cfg))
    files = len(hashes)
    with trusting_unchanged(cfg.cache_dir) as cache:
        assert keys(make_plan(cfg)) == first and cache.hashed == files
    with trusting_unchanged(cfg.cache_dir) as cache:
        assert keys(make_plan(cfg)) == first and (cache.hashed, cache.trusted) == (0, files)
    assert len(hashes) == 2 * files

    path = cfg.cache_dir / CACHE_FILE
    data = json.loads(path.read_text())
    data["entries"][str(train)][5] = sha(b"forged")
    data["checksum"] = stat_cache._checksum(data["entries"])
    path.write_text(json.dumps(data))
    with trusting_unchanged(cfg.cache_dir):
        assert keys(make_plan(cfg))["validate"] != first["validate"]   # the scheduled plan uses the cache
    assert keys(make_plan(cfg)) == first                                # the pipeline's plan does not

    old = train.stat()
    replacement = project / "new.txt"
    replacement.write_text(train.read_text().replace("Berlin", "Munich"))
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    shutil.copy2(replacement, train)
    with trusting_unchanged(cfg.cache_dir):
        scheduled = keys(make_plan(cfg))
    assert scheduled == keys(make_plan(cfg)) and scheduled["validate"] != first["validate"]
