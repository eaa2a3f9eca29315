"""Training checkpoints: atomic saves, resume from the newest intact one, and metric delivery bookkeeping.

A checkpoint (`checkpoints/step-NNNNNNNN`) holds everything a resume needs: weights, optimizer, schedule, the RNG
states of every process of the run and the loop's bookkeeping. It is written to a temp file and renamed, so a kill
never leaves half of one. Its integrity check is the archive itself: `torch.save` writes a zip whose every record
carries a CRC-32, so a torn write or damaged bytes show. Only a checkpoint that fails that check is set aside, as
`*.corrupt` (kept as evidence, never deleted by nerflow), and the one before it is used. Any other error reading one
(MemoryError, an I/O error) may pass: it is retried, then reported (`CheckpointUnreadable`), and nothing is renamed
or deleted. `recover` (rank 0, before any rank resumes) does the writing: removing a save cut short, setting aside,
repairing a best-model swap cut short (`nerflow.best_model`); `resume` only reads.
`checkpoints/metrics-delivered` counts the metric points already handed to `on_metrics`, so a resume neither loses
nor repeats one. The loop is `nerflow.train`; the kill points of a save are listed in `nerflow.faults`.
"""
from __future__ import annotations

import logging
import random
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nerflow import best_model, faults

log = logging.getLogger(__name__)
MetricsCallback = Callable[[int, dict[str, float], int], None]   # (step, values, timestamp in ms)
CHECKPOINT_NAME = re.compile(r"step-\d{8}")
DELIVERED_FILE = "metrics-delivered"   # in checkpoints/: how many metric points on_metrics has received
# waits before each retry of a checkpoint that is whole but failed to load (memory, I/O): 3 attempts in 5 s
RETRY_DELAYS_S: tuple[float, ...] = (1.0, 4.0)


class CheckpointUnreadable(RuntimeError):
    """A checkpoint that passes its integrity check but could not be loaded (memory, an I/O error, ...) even after
    retries: nothing was set aside or deleted."""


class Damaged(Exception):
    """A checkpoint that fails its integrity check: not a whole zip archive, or a record that does not match its
    CRC-32."""


def recover(root: Path, best_dir: Path, run_id: dict) -> None:
    """Make the folder resumable; rank 0 only, before any rank calls `resume` (every step is idempotent: a crash
    here is repaired by the next call). Removes a save cut short, sets aside the newest checkpoints that fail their
    integrity check (as `*.corrupt`), and repairs a best-model swap cut short (`nerflow.best_model`). A transient
    error reading a checkpoint raises `CheckpointUnreadable` and changes nothing. Gives the checkpoints up (training
    starts over) only when the newest one needs a best model that is gone and cannot be repaired."""
    for tmp in root.glob(".step-*.tmp"):   # a save cut short
        tmp.unlink(missing_ok=True)
    # the pickle only (tensors are mapped, not read): the loop state says whether a best model is needed
    state = load_newest_checkpoint(root, set_aside=True, peek=True)
    if state is not None and state["run"] != run_id:
        return   # another run's: `resume` refuses it with the reason; nothing of it is touched
    # Which best model goes with the checkpoint resumed: `fit` writes an epoch's checkpoint after that epoch's best
    # model. So a swap cut short (`best.old` and/or `best.tmp` left) means that epoch's checkpoint was never written:
    # the newest checkpoint names in `best_epoch` the model the swap was replacing, and that one is kept or put back
    # (`best.old`); the new one is discarded, and the resumed run, which repeats the rest of that epoch and its
    # validation, saves it again (bit for bit on CPU). Keeping the old one also keeps `best` and the loop's
    # best_score/best_epoch in agreement where a repeated epoch may score differently (GPU kernels). Only when no old
    # model is left (an older nerflow removed `best` before renaming `best.tmp`) is the new one taken: it is whole,
    # and far better than training from the start.
    needs_best = bool(state is not None and state["loop"].get("best_epoch"))
    best_model.repair(best_dir, adopt_tmp=needs_best)
    if needs_best and not best_dir.is_dir():
        log.warning("checkpoint step %d needs the best model of epoch %d, but %s is missing: training from the start",
                    state["loop"]["step"], state["loop"]["best_epoch"], best_dir)
        for path in list_checkpoints(root):
            path.unlink()


def resume(root: Path, run_id: dict, best_dir: Path, model, optimizer, scheduler, rank: int = 0,
           extra: dict | None = None) -> dict | None:
    """Load the newest intact checkpoint into model, optimizer, scheduler, `extra` objects with a state dict
    (a gradient scaler) and this rank's RNGs; returns its loop state (the fields of `nerflow.train.LoopState`, as
    saved). None when there is none: train from the start. Reads only, on every rank: `recover` runs first."""
    state = load_newest_checkpoint(root)
    if state is None:
        return None
    if state["run"] != run_id:
        theirs, ours = state["run"].get("world_size", 1), run_id.get("world_size", 1)
        if theirs != ours and {**state["run"], "world_size": ours} == run_id:
            raise ValueError(f"{root} holds checkpoints of a run of {theirs} processes; resume it with "
                             f"{theirs} processes (train.devices x train.nodes), not {ours}, or delete the folder "
                             "to start over")
        raise ValueError(f"{root} holds checkpoints of another training run ({state['run']}, not {run_id}); "
                         f"delete the folder to start over")
    loop = state["loop"]
    if loop["best_epoch"] and not best_dir.is_dir():   # `recover` gives such checkpoints up: not called first?
        raise RuntimeError(f"checkpoint step {loop['step']} needs the best model of epoch {loop['best_epoch']}, but "
                           f"{best_dir} is missing (nerflow.checkpoints.recover repairs it or starts over)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for name, obj in (extra or {}).items():
        obj.load_state_dict(state["extra"][name])
    restore_rng(state["rng"][rank])
    log.info("resuming from checkpoint step %d (epoch %d, batch %d): %s", loop["step"], loop["epoch"],
             loop["batches_done"], root / f"step-{loop['step']:08d}")
    return loop


def load_newest_checkpoint(root: Path, set_aside: bool = False, peek: bool = False) -> dict | None:
    """The newest checkpoint that passes its integrity check, loaded (`peek`: its tensors memory-mapped, not read).
    One that fails the check is skipped with a warning, and with `set_aside` renamed `*.corrupt` (kept, never
    deleted here: evidence of what damaged it). Any other error is retried, then raised as `CheckpointUnreadable`,
    with nothing renamed: a checkpoint that is whole is never given up for an error that may pass."""
    for path in reversed(list_checkpoints(root)):
        try:
            return read_checkpoint(path, peek)
        except Damaged as e:
            if not set_aside:
                log.warning("checkpoint %s fails its integrity check (%s); trying the previous one", path, e)
                continue
            aside = corrupt_name(path)
            log.warning("checkpoint %s fails its integrity check (%s); setting it aside as %s, trying the previous one",
                        path, e, aside.name)
            path.rename(aside)
    return None


def read_checkpoint(path: Path, peek: bool = False) -> dict:
    """One checkpoint: `Damaged` if it fails its integrity check; an error while checking or loading a whole one
    (MemoryError, an I/O error, ...) is retried after each of RETRY_DELAYS_S, then raised as CheckpointUnreadable."""
    delays = (*RETRY_DELAYS_S, None)
    for attempt, delay in enumerate(delays, 1):
        try:
            problem = integrity_problem(path)
            if problem:
                raise Damaged(problem)
            # weights_only=False: the state holds RNG states (tuples, numpy arrays), not only tensors
            state = torch.load(path, map_location="cpu", weights_only=False, mmap=peek)
            break
        except Damaged:
            raise
        except Exception as e:  # noqa: BLE001 - the file is whole: whatever failed may pass; reported if it does not
            if delay is None:
                raise CheckpointUnreadable(
                    f"checkpoint {path} could not be read after {attempt} attempts ({type(e).__name__}: {e}); it "
                    f"passes its integrity check, so it was left in place and nothing was set aside or deleted: "
                    f"fix the cause (memory, disk, file system) and train again to resume from it") from e
            log.warning("reading checkpoint %s failed (%s: %s); it passes its integrity check: retrying in %gs",
                        path, type(e).__name__, e, delay)
            time.sleep(delay)
    missing = {"model", "optimizer", "scheduler", "rng", "run", "loop"} - state.keys()
    if missing:
        raise CheckpointUnreadable(f"checkpoint {path} has no {', '.join(sorted(missing))} (written by an older "
                                   f"nerflow?); delete {path.parent} to start over")
    return state


def integrity_problem(path: Path) -> str | None:
    """What is wrong with the file, None if nothing: `torch.save` writes a zip archive whose records carry CRC-32s,
    so a torn write (a missing end, with the archive's directory) or damaged bytes show without a digest of our
    own. I/O errors and MemoryError propagate: they say nothing about the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            if records and not any(r.CRC for r in records):
                return None   # saved with torch's CRC-32s switched off: nothing to check against
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as e:
        return f"not a whole zip archive: {e}"
    return f"record {bad} does not match its CRC-32" if bad else None


def corrupt_name(path: Path) -> Path:
    """`step-N.corrupt`, or `step-N.<k>.corrupt` if that is taken: one set aside earlier is never overwritten."""
    aside, k = path.with_name(path.name + ".corrupt"), 1
    while aside.exists():
        k += 1
        aside = path.with_name(f"{path.name}.{k}.corrupt")
    return aside


def list_checkpoints(root: Path) -> list[Path]:
    """Oldest first (the 8-digit step in the name sorts)."""
    return sorted(p for p in root.glob("step-*") if CHECKPOINT_NAME.fullmatch(p.name))


def flush_metrics(metrics: list[tuple[int, int, dict, int]], root: Path, on_metrics: MetricsCallback) -> None:
    """Hand the buffered points (index, step, values, ms) to `on_metrics` and empty the buffer, skipping those an
    earlier attempt already delivered (the sequence of points is the same in every attempt); the count delivered is
    kept in `root/metrics-delivered`."""
    marker = root / DELIVERED_FILE
    delivered = int(marker.read_text()) if marker.is_file() else 0
    for index, step, values, timestamp_ms in metrics:
        if index >= delivered:
            on_metrics(step, values, timestamp_ms)
            delivered = index + 1
            tmp = marker.with_name(marker.name + ".tmp")
            tmp.write_text(str(delivered))
            tmp.replace(marker)
    metrics.clear()


def rng_state() -> dict:
    """This process's random number generators: what dropout and shuffling draw from next."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(rng: dict) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_checkpoint(root: Path, step: int, model, optimizer, scheduler, keep: int, position: dict,
                    rng: list[dict] | None = None, extra: dict | None = None) -> Path:
    """Everything a resume needs (weights, optimizer, schedule, every rank's RNG states, place in the data order,
    `extra` state dicts), written atomically; only the newest `keep` are kept."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": rng if rng is not None else [rng_state()],
             "extra": {name: obj.state_dict() for name, obj in (extra or {}).items()},
             "step": step, **position}
    try:
        torch.save(state, tmp)
    except BaseException:   # disk full, Ctrl-C mid-write: no partial file left to count against the disk
        tmp.unlink(missing_ok=True)
        raise
    # on disk: the whole new checkpoint as `.step-N.tmp` next to the older ones; `recover` removes the temp file,
    # and training resumes from the newest older one
    faults.point("checkpoint.tmp-written")
    tmp.replace(target)   # atomic, also over a checkpoint of the same step (a step's and then its epoch end's)
    # the new checkpoint is in place next to `keep` older ones: resume uses it; the next save prunes the extra one
    faults.point("checkpoint.renamed")
    # disk use: at most `keep` checkpoints, plus the one being written while it is written
    for old in list_checkpoints(root)[:-keep]:
        old.unlink()
        # one older checkpoint fewer, the newest in place: nothing to repair (the next save prunes any other)
        faults.point("checkpoint.old-removed")
    return target
