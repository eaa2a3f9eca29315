"""The best model's folder (`out_dir/best`), replaced so that a kill at any instant leaves it whole or repairable.

A swap (`swap_in`) is a sequence of single renames and removals: the new model is written completely into
`best.tmp`; the current `best` is renamed `best.old`; `best.tmp` is renamed `best`; `best.old` is removed. After a
kill the folders present say how far it got, and `repair` (run before training resumes, by
`nerflow.checkpoints.recover`) turns them back into one whole `best`:

- `best` present: the renames are done (or never started); `best.tmp` and `best.old` are leftovers and go. `best.old`
  may be half removed, so it is never put back once `best` exists.
- `best` missing, `best.old` present: the kill fell between the two renames; `best.old` goes back. It is whole:
  it was a whole `best`, and it is only removed once the new `best` is in place.
- `best` missing, only `best.tmp`: this version leaves that only while saving the first best model (there is no
  older one to set aside), which no checkpoint needs yet: `best.tmp` goes. An older nerflow removed `best` before
  renaming `best.tmp`, so a kill there left only a whole `best.tmp`: the caller says when a checkpoint needs a best
  model (`adopt_tmp`), and then `best.tmp` is renamed in rather than the checkpoints being given up.

Every repair step is idempotent, so a kill during a repair is repaired by the next one.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from nerflow import faults

log = logging.getLogger(__name__)


def temp_dir(target: Path) -> Path:
    """Where the next model is written before `swap_in`."""
    return target.with_name(target.name + ".tmp")


def old_dir(target: Path) -> Path:
    return target.with_name(target.name + ".old")


def swap_in(tmp: Path, target: Path) -> None:
    """Replace `target` by the complete folder `tmp` (see the module docstring)."""
    old = old_dir(target)
    # `best` (if any) is the previous best model and `best.tmp` the complete new one; repair removes `best.tmp`
    faults.point("best.tmp-written")
    shutil.rmtree(old, ignore_errors=True)   # not there after a repair; removed so the rename cannot fail on it
    if target.is_dir():
        target.rename(old)
        # no `best`: `best.old` holds the previous model, `best.tmp` the new one; repair puts `best.old` back
        faults.point("best.old-set-aside")
    tmp.rename(target)
    # `best` is the new model; `best.old` is a leftover that repair removes
    faults.point("best.renamed")
    shutil.rmtree(old, ignore_errors=True)


def repair(target: Path, adopt_tmp: bool = False) -> None:
    """Complete or undo a swap cut short (see the module docstring); `adopt_tmp`: a checkpoint needs a best model,
    so a lone `best.tmp` (an older nerflow's swap cut short) is renamed in rather than discarded."""
    tmp, old = temp_dir(target), old_dir(target)
    if not target.is_dir() and old.is_dir():
        log.warning("%s is missing and %s holds the model it replaced (a save of a new best model was cut short): "
                    "putting it back", target, old.name)
        old.rename(target)
    elif not target.is_dir() and tmp.is_dir() and adopt_tmp:
        log.warning("%s is missing and %s holds a complete model (an older nerflow's save cut short): using it",
                    target, tmp.name)
        tmp.rename(target)
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
