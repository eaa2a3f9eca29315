"""The distill stage's teacher answers computed once per example against once per batch of every epoch (issue 25):
seconds of a distillation on the same student, batches and windows, in one session, alternated.

    python bench/distill_teacher_cache.py --run-dir RUN --examples 600 --epochs 3 \
        --out bench/results/distill_teacher_cache-zen4-2026-12-06.json

RUN is a finished (or distilling) CoNLL-2003 benchmark run's `nerflow-run` folder: its cache holds the fine-tuned
teacher and the tokenize stage's windows. The student is the stage's (nerflow.distill.student_trainable: 4 of the
teacher's layers, `distill.*` defaults) trained by nerflow's loop for `--epochs` epochs on the first `--examples`
training windows (1,024 tokens per step, as the config, never shrunk for small data); validation is skipped (its cost
is the same either way). With one epoch both modes ask the teacher about each example once; the stage's 8 epochs ask
it 8 times about each. The time is the loop's `train_seconds`: every step, the teacher's one pass over the examples
included. Each mode runs `--rounds` times, alternated, and the row is written when all have run.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import tempfile
from pathlib import Path


def newest(cache: Path, stage: str) -> Path:
    return sorted((cache / stage / ".generations").iterdir(), key=lambda p: p.stat().st_mtime)[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--examples", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from nerflow import distill
    from nerflow.config_distill import DistillConfig
    from nerflow.config_train import TrainConfig
    from nerflow.ner.tokenization import load_windows
    from nerflow.ner.training import trainable
    from nerflow.train import fit

    cache = args.run_dir / "cache"
    teacher = newest(cache, "train") / "model"
    meta = json.loads((teacher / "nerflow.json").read_text())
    windows = load_windows(newest(cache, "tokenize") / "train")[:args.examples]
    settings = DistillConfig(enabled=True)
    cfg = distill.loop_settings(settings, TrainConfig(checkpoint_every=0, log_every=1000, device="cpu", min_steps=0))
    cfg = cfg.model_copy(update={"epochs": args.epochs})
    task = trainable(str(teacher), AutoTokenizer.from_pretrained(teacher), meta["labels"], windows, [], [], cfg, meta)
    task = dataclasses.replace(task, validate=lambda *a, **k: {"f1": 0.0})
    limit = distill.CACHE_BYTES
    seconds: dict[str, list[float]] = {"per batch": [], "once": []}
    for _ in range(args.rounds):
        for mode in seconds:
            distill.CACHE_BYTES = limit if mode == "once" else 0
            student = distill.student_trainable(task, len(meta["labels"]), settings, teacher_layers=6)
            with tempfile.TemporaryDirectory(prefix="distill-cache-") as out:
                result = fit(student, cfg, 42, Path(out))
            seconds[mode].append(round(result.train_seconds, 1))
            print(mode, seconds[mode][-1], "s", result.steps, "steps", flush=True)
    distill.CACHE_BYTES = limit
    row = {"date": datetime.datetime.now().isoformat(timespec="minutes"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "examples": len(windows), "epochs": args.epochs,
           "steps": result.steps, "seconds": seconds,
           "speedup": round(min(seconds["per batch"]) / min(seconds["once"]), 2)}
    args.out.write_text(json.dumps(row, indent=1) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
