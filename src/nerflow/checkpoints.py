"""Training checkpoints: atomic saves, resume from the newest readable one, and metric delivery bookkeeping.

A checkpoint (`checkpoints/step-NNNNNNNN`) holds everything a resume needs: weights, optimizer, schedule, the RNG
states of every process of the run and the loop's bookkeeping. It is written to a temp file and renamed, so a crash
never leaves half of one; one that does not load is set aside as `*.corrupt` and the one before it is used.
`checkpoints/metrics-delivered` counts the metric points already handed to `on_metrics`, so a resume neither loses
nor repeats one. The loop is `nerflow.train`.
"""
from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)
MetricsCallback = Callable[[int, dict[str, float], int], None]   # (step, values, timestamp in ms)
CHECKPOINT_NAME = re.compile(r"step-\d{8}")
DELIVERED_FILE = "metrics-delivered"   # in checkpoints/: how many metric points on_metrics has received


def resume(root: Path, run_id: dict, best_dir: Path, model, optimizer, scheduler, rank: int = 0,
           extra: dict | None = None) -> dict | None:
    """Load the newest readable checkpoint into model, optimizer, scheduler, `extra` objects with a state dict
    (a gradient scaler) and this rank's RNGs; returns its loop state (the fields of `nerflow.train.LoopState`, as
    saved). None when there is none (or it cannot be used): train from the start."""
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
    if loop["best_epoch"] and not best_dir.is_dir():
        log.warning("checkpoint step %d needs the best model of epoch %d, but %s is missing: training from the start",
                    loop["step"], loop["best_epoch"], best_dir)
        for path in list_checkpoints(root):
            path.unlink()
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for name, obj in (extra or {}).items():
        obj.load_state_dict(state["extra"][name])
    restore_rng(state["rng"][rank])
    log.info("resuming from checkpoint step %d (epoch %d, batch %d): %s", loop["step"], loop["epoch"],
             loop["batches_done"], root / f"step-{loop['step']:08d}")
    return loop


def load_newest_checkpoint(root: Path) -> dict | None:
    """The newest checkpoint that loads. One that does not (truncated, ...) is renamed `*.corrupt`, with a warning,
    and the one before it is tried; only the newest `.corrupt` is kept (evidence, not an archive: each is a
    full checkpoint)."""
    for tmp in root.glob(".step-*.tmp"):   # a save cut short
        tmp.unlink()
    for path in reversed(list_checkpoints(root)):
        try:
            # weights_only=False: the state holds RNG states (tuples, numpy arrays), not only tensors
            state = torch.load(path, map_location="cpu", weights_only=False)
            missing = {"model", "optimizer", "scheduler", "rng", "run", "loop"} - state.keys()
            if missing:
                raise ValueError(f"no {', '.join(sorted(missing))} (an older format?)")
        except Exception as e:  # noqa: BLE001 - whatever is wrong with it, the previous checkpoint may do
            log.warning("checkpoint %s is unusable (%s: %s); setting it aside as %s.corrupt, trying the previous one",
                        path, type(e).__name__, e, path.name)
            for older in root.glob("step-*.corrupt"):
                older.unlink()
            path.replace(path.with_name(path.name + ".corrupt"))
            continue
        return state
    return None


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
    tmp.replace(target)
    # disk use: at most `keep` checkpoints, plus the one being written while it is written
    for old in list_checkpoints(root)[:-keep]:
        old.unlink()
    return target
