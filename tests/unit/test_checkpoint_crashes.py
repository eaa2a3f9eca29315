"""Checkpoints and the best model under a kill at any point and under transient errors: training resumes from the
newest good checkpoint and ends with a whole `best/`, exactly as an uninterrupted run (CPU, same seed). Only a
checkpoint that fails its integrity check is set aside; a transient error is retried, then reported, and gives up
nothing. The kills are real: a training child process SIGKILLs itself at a named point (`nerflow.faults`)."""
from __future__ import annotations

import errno
import hashlib
import logging
import multiprocessing
import os
import shutil
import signal
import zipfile
from pathlib import Path

import pytest
import torch

from nerflow import checkpoints, faults
from nerflow.checkpoints import list_checkpoints
from nerflow.ner.tokenization import Encoder
from tests.conftest import TINY_TEXTS
from tests.unit import test_resume as resumed_run  # its run (data, settings, helpers) is the one crashed here
from tests.unit.test_resume import final_weights, run

# test_resume's run at a higher learning rate, so that a later epoch scores better and replaces the best model
CFG = resumed_run.CFG.model_copy(update={"lr": 0.01})


@pytest.fixture(scope="module")
def data(tiny_model_dir, tiny_tokenizer):
    """tests/unit/test_resume.py's data: 3 epochs of 12 steps, a checkpoint every 3 steps, the newest 2 kept."""
    r = resumed_run
    encoder = Encoder(tiny_tokenizer, max_length=12, stride=3)
    val_sentences = [t.split() for t in TINY_TEXTS]
    return {"model_dir": str(tiny_model_dir), "labels": r.LABELS,
            "train": r.encode(encoder, [t.split() for t in TINY_TEXTS * 6])[:r.N_WINDOWS],
            "val": r.encode(encoder, val_sentences), "gold": [r.tags_of(s) for s in val_sentences], "cfg": CFG,
            "seed": r.SEED, "meta": r.META}


@pytest.fixture(scope="module")
def reference(data, tiny_tokenizer, tmp_path_factory):
    """The uninterrupted run every other run must end as."""
    out = tmp_path_factory.mktemp("uninterrupted")
    return {"out": out, "result": train(data, tiny_tokenizer, out)}


def train(data, tokenizer, out: Path, **kwargs):
    return run(data, tokenizer, out, cfg=CFG, **kwargs)


def files(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256): what a step renamed, deleted or changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_ends_as_uninterrupted(out: Path, result, reference) -> None:
    ref = reference["result"]
    assert (result.best_f1, result.best_epoch, result.epochs_run, result.steps, result.history) == \
           (ref.best_f1, ref.best_epoch, ref.epochs_run, ref.steps, ref.history)
    mine, theirs = final_weights(out), final_weights(reference["out"])
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs), "final weights differ from the uninterrupted run"
    assert files(out / "best") == files(reference["out"] / "best"), "best/ is not the uninterrupted run's"
    assert not (out / "best.tmp").exists() and not (out / "best.old").exists()


def crashed_at_step_8(data, tokenizer, out: Path) -> None:
    """Checkpoints at steps 3 and 6 (both good), then an exception."""
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(data, tokenizer, out, windows=resumed_run.CrashingWindows(data["train"], steps_ok=8))
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-00000003", "step-00000006"]


# --- transient errors: retried, reported, nothing given up


@pytest.mark.parametrize("error", [MemoryError(), OSError(errno.EIO, "Input/output error")], ids=["memory", "eio"])
def test_a_transient_error_is_retried_then_reported_and_nothing_is_set_aside(error, data, tiny_tokenizer, reference,
                                                                             tmp_path, monkeypatch, caplog):
    crashed_at_step_8(data, tiny_tokenizer, tmp_path)
    before = files(tmp_path)
    ckpt_dir, real_load, loads = tmp_path / "checkpoints", torch.load, []

    def failing_load(f, *args, **kwargs):
        if isinstance(f, str | os.PathLike) and Path(f).parent == ckpt_dir:
            loads.append(Path(f).name)
            raise error
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", failing_load)
    monkeypatch.setattr(checkpoints, "RETRY_DELAYS_S", (0.0, 0.0), raising=False)   # retried without waiting
    # (RuntimeError: checkpoints.CheckpointUnreadable; the test runs against the code before it too)
    with pytest.raises(RuntimeError, match=f"step-00000006 could not be read after 3 attempts "
                                           f"\\({type(error).__name__}"):
        train(data, tiny_tokenizer, tmp_path)
    assert loads == ["step-00000006"] * 3, "retried, and not replaced by the previous checkpoint"
    assert files(tmp_path) == before, "a transient error renamed or deleted something"

    monkeypatch.setattr(torch, "load", real_load)   # the memory is back
    caplog.set_level(logging.INFO, logger="nerflow")
    result = train(data, tiny_tokenizer, tmp_path)
    assert "resuming from checkpoint step 6 (epoch 1, batch 6)" in caplog.text
    assert_ends_as_uninterrupted(tmp_path, result, reference)


# --- damaged checkpoints: set aside, the previous one used, earlier evidence kept


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-4096])   # a torn write: the archive's end (its directory) is missing


def flip_a_weight_byte(path: Path) -> None:
    """A damaged byte in the middle of the file (tensor data): torch.load reads it without complaint."""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [truncate, flip_a_weight_byte], ids=["truncated", "flipped-byte"])
def test_a_damaged_checkpoint_is_set_aside_and_earlier_ones_are_kept(damage, data, tiny_tokenizer, reference,
                                                                     tmp_path, caplog):
    crashed_at_step_8(data, tiny_tokenizer, tmp_path)
    ckpt_dir = tmp_path / "checkpoints"
    earlier = {"step-00000002.corrupt": b"set aside by an earlier resume",
               "step-00000006.corrupt": b"an earlier step-6, set aside before this one"}
    for name, content in earlier.items():
        (ckpt_dir / name).write_bytes(content)
    newest = ckpt_dir / "step-00000006"
    damage(newest)
    damaged = newest.read_bytes()
    if damage is truncate:   # the damage is one the archive's own checks see
        assert not zipfile.is_zipfile(newest)
    else:
        with zipfile.ZipFile(newest) as archive:
            assert archive.testzip() is not None, "the flipped byte is in no record"
    caplog.set_level(logging.INFO, logger="nerflow")
    result = train(data, tiny_tokenizer, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(newest) in w for w in warnings), warnings
    assert "resuming from checkpoint step 3 (epoch 1, batch 3)" in caplog.text
    for name, content in earlier.items():
        assert (ckpt_dir / name).read_bytes() == content, f"{name} was deleted or overwritten"
    assert (ckpt_dir / "step-00000006.2.corrupt").read_bytes() == damaged
    assert_ends_as_uninterrupted(tmp_path, result, reference)


# --- the best model


def test_a_missing_best_with_a_whole_best_tmp_is_completed_not_discarded(data, tiny_tokenizer, reference, tmp_path,
                                                                         caplog):
    """What an older nerflow left after a kill between removing `best/` and renaming `best.tmp`: every checkpoint was
    deleted and training started over. Now `best.tmp` is renamed in and training resumes."""
    out = tmp_path / "work"
    shutil.copytree(reference["out"], out)
    (out / "best").rename(out / "best.tmp")
    caplog.set_level(logging.INFO, logger="nerflow")
    result = train(data, tiny_tokenizer, out)
    assert "training from the start" not in caplog.text
    assert "resuming from checkpoint step 36 (epoch 4, batch 0)" in caplog.text
    assert_ends_as_uninterrupted(out, result, reference)


# --- kills at every point of a checkpoint save and of a best-model swap


def improving_epochs(reference) -> list[int]:
    best, found = -1.0, []
    for h in reference["result"].history:
        if h["val_f1"] > best:
            best, found = h["val_f1"], [*found, h["epoch"]]
    return found


# (point, the files the kill leaves in checkpoints/ and as best*, the checkpoint training resumes from as (step,
# epoch, batch)). The saves: steps 3, 6, 9, 12, then 12 again at the epoch end (after that epoch's best model), 15,
# ...; the newest 2 kept. A best model is saved at the end of epoch 1 and, replacing it, at the end of the next epoch
# that scores better (NEXT_BEST: its checkpoints and place are worked out from the uninterrupted run's history).
NEXT_BEST = "the checkpoints of the next better epoch"
KILLS = [
    ("checkpoint.tmp-written@2", {".step-00000006.tmp", "step-00000003"}, set(), (3, 1, 3)),
    ("checkpoint.tmp-written@5", {".step-00000012.tmp", "step-00000009", "step-00000012"}, {"best"}, (12, 1, 12)),
    ("checkpoint.renamed@2", {"step-00000003", "step-00000006"}, set(), (6, 1, 6)),
    ("checkpoint.old-removed@1", {"step-00000006", "step-00000009"}, set(), (9, 1, 9)),
    ("best.tmp-written@1", {"step-00000009", "step-00000012"}, {"best.tmp"}, (12, 1, 12)),
    ("best.tmp-written@2", NEXT_BEST, {"best", "best.tmp"}, NEXT_BEST),
    ("best.old-set-aside@1", NEXT_BEST, {"best.old", "best.tmp"}, NEXT_BEST),
    ("best.renamed@2", NEXT_BEST, {"best", "best.old"}, NEXT_BEST),
]


def killed_at(point: str, data, tokenizer, out: Path) -> int | None:
    """Train in a child process that SIGKILLs itself at `point`; its exit code. The child is forked: it starts with
    torch and transformers imported (a fresh interpreter spends seconds importing them), then trains for real."""
    child = multiprocessing.get_context("fork").Process(target=train_until_killed, args=(point, data, tokenizer, out))
    child.start()
    child.join(timeout=120)
    if child.exitcode is None:
        child.kill()
        child.join()
        pytest.fail(f"the training killed at {point} did not end in 120 s")
    return child.exitcode


def train_until_killed(point: str, data, tokenizer, out: Path) -> None:
    os.environ[faults.ENV] = point
    train(data, tokenizer, out)


def test_every_checkpoint_and_best_point_is_killed_at():
    in_source = {p for p in faults.points_in_source() if p.startswith(("checkpoint.", "best."))}
    assert in_source == {point.split("@")[0] for point, *_ in KILLS}


@pytest.mark.parametrize(("point", "checkpoint_files", "best_dirs", "resumed"), KILLS, ids=[k[0] for k in KILLS])
def test_a_kill_at_any_point_resumes_from_the_newest_good_checkpoint(point, checkpoint_files, best_dirs, resumed,
                                                                     data, tiny_tokenizer, reference, tmp_path,
                                                                     caplog):
    if resumed == NEXT_BEST:
        epochs = improving_epochs(reference)
        assert len(epochs) > 1, f"the run must score better after epoch 1 for a best model to be replaced: {epochs}"
        per_epoch = resumed_run.STEPS_PER_EPOCH
        last = epochs[1] * per_epoch   # that epoch's last step: its checkpoint, before the epoch end's, is the newest
        checkpoint_files, resumed = {f"step-{last - 3:08d}", f"step-{last:08d}"}, (last, epochs[1], per_epoch)
    exitcode = killed_at(point, data, tiny_tokenizer, tmp_path)
    assert exitcode == -signal.SIGKILL, f"{point} was not reached (exit code {exitcode})"
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} - {"metrics-delivered"} == checkpoint_files
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("best")} == best_dirs
    caplog.set_level(logging.INFO, logger="nerflow")
    result = train(data, tiny_tokenizer, tmp_path)
    step, epoch, batch = resumed
    assert f"resuming from checkpoint step {step} (epoch {epoch}, batch {batch})" in caplog.text
    assert "training from the start" not in caplog.text
    assert_ends_as_uninterrupted(tmp_path, result, reference)
