"""The scheduled "anything to do?" check reads a data or model file only when its stat changed since it was last
hashed (nerflow.stat_cache), and stays right when one did.

The real entry flow `nerflow-scheduled` on the session's Prefect and MLflow, against the version the session's
pipeline registered: the second check on unchanged inputs hashes no file. Then what it costs on a realistic base model
(a 100 MB weights file), measured."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from nerflow import stat_cache
from nerflow.config import load_config, resolved_dict
from nerflow.flows.scheduled import scheduled_pipeline
from nerflow.plan import make_plan
from nerflow.stat_cache import trusting_unchanged

OPENED: list[str] | None = None   # while a list: every file opened in this process (Python's audit hook)


def _record(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], (str, Path)):
        OPENED.append(os.path.abspath(args[0]))


sys.addaudithook(_record)   # cannot be removed: it does nothing while OPENED is None


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Every file the real hashing function reads, by name."""
    read, real = [], stat_cache._hash_file

    def counted(path):
        read.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(stat_cache, "_hash_file", counted)
    return read


def test_a_scheduled_check_on_unchanged_inputs_hashes_nothing_the_second_time(pipeline_result, tmp_path,
                                                                              tmp_path_factory, monkeypatch):
    """Counted at the files: which of the data and model files each check opens."""
    global OPENED
    cfg, result = pipeline_result
    config = tmp_path / "scheduled.yaml"   # the session run's config, its own cache folder (not in any key)
    config.write_text(yaml.safe_dump({**resolved_dict(cfg), "cache_dir": str(tmp_path / "cache")}))
    monkeypatch.setenv("NERFLOW_WORKDIR_ROOTS", str(tmp_path_factory.getbasetemp()))
    monkeypatch.chdir(tmp_path)
    inputs = {str(p) for root in (cfg.model.name_or_path, cfg.data.dir) for p in Path(root).rglob("*") if p.is_file()}
    # "nothing to do: ..." or, when a drift check of another test in this session flagged tiny-ner since,
    # "drift detected, no new labelled data: ...": either way the check found the registered version
    said = f"tiny-ner version {result['register'].version} was registered from this data, config and code"
    read = []
    for _ in range(2):
        OPENED = []
        try:
            state = scheduled_pipeline(str(config), [], str(tmp_path), return_state=True)
        finally:
            opened, OPENED = set(OPENED), None
        assert state.is_completed() and said in state.message, state.message
        read.append(opened & inputs)
    assert read == [inputs, set()], read   # first every data and model file, then none
    assert (tmp_path / "cache" / stat_cache.CACHE_FILE).is_file()


def test_what_the_check_costs_on_a_100_mb_model_before_and_after(tmp_path, monkeypatch, hashes, capsys):
    """The plan the check makes, first with nothing recorded, then with every file unchanged; and a `cp -p` of new
    content over the weights is hashed again and changes the keys. The files are a minute old for the cache (a file
    younger than stat_cache.RACY_NS is hashed every time; see test_stat_cache)."""
    monkeypatch.setattr(stat_cache, "now_ns", lambda: time.time_ns() + 60 * 10**9)
    data, model = tmp_path / "data", tmp_path / "model"
    data.mkdir()
    model.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (data / name).write_text("John B-PER\nvisited O\nBerlin B-LOC\n. O\n" * 2000)
    (model / "config.json").write_text('{"model_type": "bert"}')
    weights = model / "pytorch_model.bin"
    weights.write_bytes(os.urandom(1 << 20) * 100)
    (tmp_path / "c.yaml").write_text(f"cache_dir: {tmp_path / 'cache'}\nmodel: {{name_or_path: {model}}}\n"
                                     f"data: {{dir: {data}, train: train.txt, validation: valid.txt, "
                                     "test: test.txt}\n")
    cfg = load_config(tmp_path / "c.yaml", [])
    make_plan(cfg)   # imports and code identity warm, as in a long-running worker
    took = []
    for _ in range(2):
        started = time.perf_counter()
        with trusting_unchanged(cfg.cache_dir) as cache:
            plan = make_plan(cfg)
        took.append((time.perf_counter() - started, cache.hashed, cache.trusted))
    assert [t[1:] for t in took] == [(5, 0), (0, 5)]
    started = time.perf_counter()
    make_plan(cfg)
    pipeline_s = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nscheduled check, 100 MB model: first {took[0][0]:.3f} s, unchanged {took[1][0]:.3f} s; "
              f"the pipeline's plan (content always hashed) {pipeline_s:.3f} s")

    old = weights.stat()
    new = tmp_path / "new.bin"
    new.write_bytes(b"\x01" + weights.read_bytes()[1:])
    os.utime(new, ns=(old.st_atime_ns, old.st_mtime_ns))
    shutil.copy2(new, weights)
    hashes.clear()
    with trusting_unchanged(cfg.cache_dir):
        after = make_plan(cfg)
    assert hashes == ["pytorch_model.bin"]
    assert after.model_hash != plan.model_hash
    assert after.stages["train"].key != plan.stages["train"].key
    assert after.stages["train"].key == make_plan(cfg).stages["train"].key   # the pipeline sees the same change
