"""The stage cache: atomic outputs, lookups that trust only what their manifest vouches for, listing and pruning
(from Python and from `nerflow cache ls / prune`)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nerflow import cache
from nerflow.flows import cli
from nerflow.locks import note_generation, run_lock

DAY = 86400


def write_entry(root: Path, stage: str, key: str, files: dict[str, str] | None = None, age_days: float = 0,
                replace: bool = False) -> Path:
    """A complete output under (stage, key); returns the generation folder the key now names."""
    with cache.stage_output(root, stage, key, {"settings": {"x": 1}}, replace=replace) as out:
        for name, text in (files or {"out.txt": f"{stage} {key}"}).items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text)
    folder = cache.lookup(root, stage, key)
    stamp = time.time() - age_days * DAY
    os.utime(folder, (stamp, stamp))
    return folder


def visible(stage_dir: Path) -> list[str]:
    """What sits in a stage's folder besides the generations: pointers, work folders, temp folders."""
    return sorted(p.name for p in stage_dir.iterdir() if p.name != cache.GENERATIONS)


def test_stage_output_appears_whole_and_is_found(tmp_path):
    folder = write_entry(tmp_path, "tokenize", "k1", {"train/data.arrow": "abc", "stats.json": "{}"})
    assert cache.lookup(tmp_path, "tokenize", "k1") == folder
    assert folder.parent.name == cache.GENERATIONS and (tmp_path / "tokenize" / "k1").is_symlink()
    assert (folder / "train" / "data.arrow").read_text() == "abc"
    assert visible(tmp_path / "tokenize") == ["k1"]                                  # no temp folder left
    assert cache.lookup(tmp_path, "tokenize", "other") is None
    assert cache.lookup(tmp_path, "train", "k1") is None


def test_an_exception_inside_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError, match="disk on fire"):
        with cache.stage_output(tmp_path, "train", "k1") as out:
            (out / "half-written.bin").write_bytes(b"\0" * 1000)
            raise RuntimeError("disk on fire")
    assert list((tmp_path / "train").iterdir()) == []
    assert cache.lookup(tmp_path, "train", "k1") is None


@pytest.mark.parametrize("replace", [False, True])
def test_a_failed_rewrite_keeps_the_previous_output(tmp_path, replace):
    folder = write_entry(tmp_path, "evaluate", "k1", {"metrics.json": '{"f1": 0.5}'})
    with pytest.raises(KeyboardInterrupt):
        with cache.stage_output(tmp_path, "evaluate", "k1", replace=replace) as out:
            (out / "metrics.json").write_text('{"f1": 0.9}')
            raise KeyboardInterrupt
    assert cache.lookup(tmp_path, "evaluate", "k1") == folder
    assert (folder / "metrics.json").read_text() == '{"f1": 0.5}'
    assert visible(tmp_path / "evaluate") == ["k1"]


def test_a_second_output_of_the_same_key_keeps_the_first_unless_forced(tmp_path):
    """Two processes computing one key end with one entry: the first; a forced recompute replaces it."""
    first = write_entry(tmp_path, "train", "k1", {"model/weights.bin": "first"})
    assert write_entry(tmp_path, "train", "k1", {"model/weights.bin": "second"}) == first
    assert (first / "model" / "weights.bin").read_text() == "first"
    assert len(list((tmp_path / "train" / cache.GENERATIONS).iterdir())) == 1     # the second was discarded
    forced = write_entry(tmp_path, "train", "k1", {"model/weights.bin": "forced"}, replace=True)
    assert forced != first and cache.lookup(tmp_path, "train", "k1") == forced
    assert (forced / "model" / "weights.bin").read_text() == "forced"


def test_a_forced_output_never_changes_a_generation_under_its_reader(tmp_path):
    """A reader resolved the key before the forced recompute: it keeps reading the old generation, whole."""
    old = write_entry(tmp_path, "train", "k1", {"model/weights.bin": "first"})
    reader = (old / "model" / "weights.bin").open()
    inode = old.stat().st_ino
    new = write_entry(tmp_path, "train", "k1", {"model/weights.bin": "second"}, replace=True)
    assert cache.lookup(tmp_path, "train", "k1") == new
    assert old.stat().st_ino == inode and reader.read() == "first" and cache.verified(old)
    reader.close()
    assert [(e.key, e.current) for e in cache.list_entries(tmp_path)] == [("k1", True), ("k1", False)]


@pytest.mark.parametrize("leftover", ["no manifest", "damaged", "a file", "dangling pointer"])
def test_an_incomplete_entry_under_the_key_is_replaced(tmp_path, leftover):
    final = tmp_path / "train" / "k1"
    if leftover == "a file":
        final.parent.mkdir(parents=True)
        final.write_text("stray")
    elif leftover == "damaged":
        torn = write_entry(tmp_path, "train", "k1", {"w.bin": "old weights"})
        (torn / "w.bin").write_text("torn")
    elif leftover == "dangling pointer":
        final.parent.mkdir(parents=True)
        final.symlink_to(f"{cache.GENERATIONS}/gone")
    else:
        (final / "model").mkdir(parents=True)
        (final / "model" / "half.bin").write_text("half")
    with cache.stage_output(tmp_path, "train", "k1") as out:
        (out / "w.bin").write_text("new weights")
    found = cache.lookup(tmp_path, "train", "k1")
    assert found is not None and (found / "w.bin").read_text() == "new weights"
    assert visible(tmp_path / "train") == ["k1"]


def test_a_folder_from_before_generations_is_read_and_replaced_by_a_forced_output(tmp_path):
    legacy = tmp_path / "train" / "k1"
    legacy.mkdir(parents=True)
    (legacy / "w.bin").write_text("old")
    (legacy / cache.MANIFEST).write_text(json.dumps({"key": "k1", "files": {"w.bin": 3}}))
    assert cache.lookup(tmp_path, "train", "k1") == legacy
    new = write_entry(tmp_path, "train", "k1", {"w.bin": "new"}, replace=True)
    assert cache.lookup(tmp_path, "train", "k1") == new and (new / "w.bin").read_text() == "new"
    assert [e.current for e in cache.list_entries(tmp_path)].count(False) == 1      # the old one, until pruned


def test_weights_hash_covers_weights_only(tmp_path):
    from nerflow.models import weights_sha256

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"\1\2\3" * 1000)
        (d / "config.json").write_text("{}")
    (b / "config.json").write_text('{"other": 1}')                                 # not weights: same hash
    assert weights_sha256(a) == weights_sha256(b)
    assert len(weights_sha256(a)) == 64
    (b / "model.safetensors").write_bytes(b"\1\2\4" + b"\1\2\3" * 999)         # one byte: another hash
    assert weights_sha256(a) != weights_sha256(b)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no weight files"):
        weights_sha256(tmp_path / "empty")


@pytest.mark.parametrize("damage", ["truncate", "delete", "add", "manifest"])
def test_lookup_rejects_an_entry_that_no_longer_matches_its_manifest(tmp_path, damage):
    folder = write_entry(tmp_path, "train", "k1", {"model/model.safetensors": "weights" * 100, "train.json": "{}"})
    weights = folder / "model" / "model.safetensors"
    if damage == "truncate":
        with weights.open("r+b") as f:
            f.truncate(10)
    elif damage == "delete":
        weights.unlink()
    elif damage == "add":
        (folder / "model" / "stray.bin").write_bytes(b"x")
    else:
        (folder / cache.MANIFEST).write_text("{not json")
    assert cache.lookup(tmp_path, "train", "k1") is None


@pytest.fixture
def populated(tmp_path) -> Path:
    """Three train outputs (0, 10 and 40 days old), one validate output, a partial training folder, a temp folder."""
    root = tmp_path / "cache"
    for key, age in [("t-new", 0), ("t-mid", 10), ("t-old", 40)]:
        write_entry(root, "train", key, age_days=age)
    write_entry(root, "validate", "v-old", age_days=50)
    work = root / "train" / "t-run.work" / "checkpoints"
    work.mkdir(parents=True)
    (work / "step-00000010").write_bytes(b"\0" * 2000)
    stamp = time.time() - 5 * DAY
    os.utime(root / "train" / "t-run.work", (stamp, stamp))
    (root / "train" / ".t-x.1234.tmp").mkdir()                         # left by a killed write (no lock held)
    (root / "locks").mkdir()
    (root / "models" / "all-MiniLM-L6-v2").mkdir(parents=True)        # unpacked base models are not stage outputs
    return root


def test_list_entries_newest_first_with_partial_training_folders(populated):
    entries = cache.list_entries(populated)
    assert [(e.stage, e.key, e.complete) for e in entries] == [
        ("train", "t-new", True), ("train", "t-run", False), ("train", "t-mid", True), ("train", "t-old", True),
        ("validate", "v-old", True)]
    assert next(e for e in entries if e.key == "t-run").bytes == 2000
    assert cache.list_entries(populated / "nothing-here") == []


def test_select_prunable_keeps_the_newest_per_stage_and_never_protected_keys(populated):
    entries = cache.list_entries(populated)
    pick = lambda *args: [(e.stage, e.key) for e in cache.select_prunable(entries, *args)]  # noqa: E731
    assert pick(1, None, set()) == [("train", "t-run"), ("train", "t-mid"), ("train", "t-old")]
    assert pick(1, None, {"t-mid"}) == [("train", "t-run"), ("train", "t-old")]
    assert pick(None, 30 * DAY, set()) == [("train", "t-old"), ("validate", "v-old")]
    assert pick(None, 30 * DAY, {"v-old"}) == [("train", "t-old")]
    assert pick(3, 7 * DAY, set()) == [("train", "t-mid"), ("train", "t-old"), ("validate", "v-old")]
    assert pick(10, None, set()) == []


def test_remove_deletes_the_whole_entry(populated):
    (old,) = [e for e in cache.list_entries(populated) if e.key == "t-old"]
    cache.remove(old)
    assert not old.path.exists()
    assert cache.lookup(populated, "train", "t-old") is None
    assert visible(populated / "train") == [".t-x.1234.tmp", "t-mid", "t-new", "t-run.work"]


def test_cli_cache_ls(populated, capsys):
    assert cli.main(["cache", "ls", "--cache-dir", str(populated)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["train", "t-new"], ["train", "t-run"], ["train", "t-mid"], ["train", "t-old"], ["validate", "v-old"]]
    assert "partial" in lines[1] and "partial" not in lines[0]
    assert lines[-1].startswith("5 entries")


@pytest.fixture
def empty_mlflow(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_cli_cache_prune(populated, empty_mlflow, capsys):
    before = visible(populated / "train")
    assert cli.main(["cache", "prune", "--keep", "1", "--dry-run", "--cache-dir", str(populated)]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:3] for line in out.splitlines()[:-1]] == [
        ["would", "remove", "train/t-run.work"], ["would", "remove", "train/t-mid"], ["would", "remove", "train/t-old"],
        ["would", "remove", "train/.t-x.1234.tmp"]]
    assert out.splitlines()[-1].startswith("3 entries")
    assert visible(populated / "train") == before                                   # a dry run removes nothing

    # a live run's keys are protected: its lock lists them
    with run_lock(populated, "some-logical-run", {"train": "t-mid", "validate": "v-old"}):
        assert cli.main(["cache", "prune", "--keep", "1", "--cache-dir", str(populated)]) == 0
    out = capsys.readouterr().out
    assert "removing train/t-old" in out and "removing train/t-run.work" in out and "t-mid" not in out
    assert [(e.stage, e.key) for e in cache.list_entries(populated)] == [
        ("train", "t-new"), ("train", "t-mid"), ("validate", "v-old")]


def test_cli_cache_prune_needs_a_rule(populated, capsys):
    assert cli.main(["cache", "prune", "--cache-dir", str(populated)]) == cli.EXIT_BAD_INPUT
    assert "--keep" in capsys.readouterr().err


def test_prune_removes_replaced_generations_unless_a_live_run_reads_them(populated, empty_mlflow, capsys):
    current = cache.lookup(populated, "train", "t-new")
    replacement = write_entry(populated, "train", "t-new", {"out.txt": "forced"}, replace=True)
    with run_lock(populated, "reader-run", {"train": "t-new"}):
        note_generation(populated, "reader-run", "train", current.name)   # that run still reads the old one
        assert cli.main(["cache", "prune", "--keep", "5", "--cache-dir", str(populated)]) == 0
    assert current.is_dir() and "t-new" not in capsys.readouterr().out
    assert cli.main(["cache", "prune", "--keep", "5", "--cache-dir", str(populated)]) == 0
    assert f"removing train/{current.name}" in capsys.readouterr().out
    assert not current.exists() and cache.lookup(populated, "train", "t-new") == replacement


def test_prune_removes_what_killed_writes_left_unless_a_live_process_holds_the_key(populated, empty_mlflow, capsys):
    """A write killed before its rename leaves a hidden temp folder (`cache.output-written`: output complete, key
    unnamed); a kill in `point` leaves a `.lnk`; one in `discard`, a renamed folder. Lookups never read them; prune
    removes them, but not while a live process computes that key (its temp folder is the work in progress)."""
    import multiprocessing

    def killed_write():
        os.environ["NERFLOW_FAULT_POINT"] = "cache.output-written"
        write_entry(populated, "train", "t-killed", {"model.bin": "x" * 1000})

    child = multiprocessing.get_context("fork").Process(target=killed_write)
    child.start()
    child.join(60)
    assert child.exitcode == -9                                     # SIGKILLed at the point
    assert cache.lookup(populated, "train", "t-killed") is None
    left = [p.name for _, _, p in cache.leftovers(populated) if p.name.startswith(".t-killed.")]
    assert len(left) == 1 and left[0].endswith(".tmp")
    os.symlink("nowhere", populated / "train" / ".t-new.0badc0de.lnk")
    (populated / "train" / cache.GENERATIONS / ".t-old@1234abcd.5678ef.tmp").mkdir()
    busy = populated / "validate" / ".v-busy.0123abcd.tmp"
    busy.mkdir()

    from nerflow.locks import stage_lock
    with stage_lock(populated, "validate", "v-busy"):               # a live process computes this key
        assert cli.main(["cache", "prune", "--keep", "5", "--cache-dir", str(populated)]) == 0
    out = capsys.readouterr().out
    assert out.count("left by an interrupted write") == 4 and "v-busy" not in out
    assert [p for _, _, p in cache.leftovers(populated)] == [busy]
    assert cache.lookup(populated, "train", "t-new") is not None   # the entries themselves untouched


def test_cli_cache_commands_use_nerflow_cache_dir_when_no_folder_is_given(populated, empty_mlflow, tmp_path,
                                                                           monkeypatch, capsys):
    """A worker's NERFLOW_CACHE_DIR is where its runs write (nerflow.config): ls and prune look there too, not at
    ./.cache/nerflow of whatever directory they run in; --cache-dir still wins."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NERFLOW_CACHE_DIR", str(populated))
    assert cli.main(["cache", "ls"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"5 entries, 0.0 MB in {populated}"
    assert cli.main(["cache", "prune", "--keep", "1", "--dry-run"]) == 0
    assert "would remove train/t-old" in capsys.readouterr().out
    assert cli.main(["cache", "ls", "--cache-dir", str(tmp_path / "elsewhere")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 entries")
    monkeypatch.delenv("NERFLOW_CACHE_DIR")
    assert cli.main(["cache", "ls"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 entries, 0.0 MB in .cache/nerflow"
