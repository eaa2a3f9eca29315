"""Fine-tuning: AdamW + linear warmup/decay, clipping, dynamic padding, early stopping on validation F1.

The whole step is in `train`'s inner loop. Tracking is a callback (`on_metrics(step, values)`): this module never
imports a tracker. The weights kept in `out_dir/best` are those of the epoch with the best validation F1.

Resumable: `out_dir/checkpoints` gets a checkpoint every `checkpoint_every` steps and at each epoch end (model,
optimizer, schedule, RNG states, the loop's bookkeeping; writing, loading and metric delivery are in
`nerflow.checkpoints`). `train` called again on the same `out_dir` continues from the newest readable one,
mid-epoch included, and on CPU ends with exactly the weights of an uninterrupted run. SIGTERM (a pre-emption
notice) or SIGINT (Ctrl-C) writes a checkpoint at the next step boundary and raises `TrainingInterrupted`.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from nerflow.checkpoints import MetricsCallback, flush_metrics, resume, save_checkpoint
from nerflow.config import TrainConfig
from nerflow.evaluate import score
from nerflow.predict import collate, predict_windows, write_meta
from nerflow.tokenization import Window

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived: a checkpoint was written at the next step boundary and training stopped there.
    `train` called again with the same `out_dir` continues from it."""


def default_lr(n_params: int, total_steps: int) -> float:
    """Learning rate by model size and schedule length (measurements in docs/benchmarks.md).

    Small models on small data need far more than the Trainer recipe's 5e-5: with it MiniLM (22M) predicts only
    `O` after one epoch on 300 CoNLL sentences (38 steps), while 3e-4 reaches F1 ~0.3. On long schedules a high
    rate forgets too much of the pretrained model: CoNLL-2003, 3 epochs, 5,268 steps, validation F1 0.899 at 3e-4,
    0.912 at 1e-4 and 0.908 at 5e-5 (same decoding). So short runs (< 2,000 steps) get 3e-4, long ones 1e-4."""
    if n_params < 60_000_000:   # MiniLM, DistilBERT-small, tiny test models
        return 3e-4 if total_steps < 2_000 else 1e-4
    if n_params < 200_000_000:  # BERT-base, RoBERTa-base
        return 5e-5
    return 2e-5                 # large models


def select_device(cfg: TrainConfig) -> tuple[str, torch.dtype | None]:
    """CUDA when present (bf16 autocast where the GPU supports it), CPU otherwise."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    device = "cuda" if use_cuda else "cpu"
    bf16 = use_cuda and torch.cuda.is_bf16_supported() and cfg.precision in ("auto", "bf16")
    if cfg.precision == "bf16" and not bf16:
        raise RuntimeError("train.precision=bf16 needs a CUDA device that supports bf16")
    return device, (torch.bfloat16 if bf16 else None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """The batch order of one epoch, a pure function of (seed, epoch): a resumed run can recompute it.
    Grouping sorts shuffled chunks of 50 batches by length, so a batch pads little but epochs still differ."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        chunk = batch_size * 50
        order = [i for c in range(0, len(order), chunk) for i in sorted(order[c:c + chunk], key=lambda i: -lengths[i])]
    batches = [order[b:b + batch_size] for b in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def build_optimizer(model, cfg: TrainConfig, lr: float, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    params = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(params, lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(total_steps * cfg.warmup_ratio), total_steps)
    return optimizer, scheduler


@dataclass
class TrainResult:
    best_dir: Path
    best_f1: float
    best_epoch: int
    epochs_run: int
    steps: int
    lr: float
    train_samples_per_s: float
    train_tokens_per_s: float
    history: list[dict] = field(default_factory=list)
    checkpoint_seconds: float = 0.0     # spent writing checkpoints (all attempts but a crashed one's last write)
    checkpoint_bytes: int = 0           # the size of one checkpoint (weights + optimizer state + RNG states)


@dataclass
class LoopState:
    """The loop's bookkeeping: with weights, optimizer, schedule and RNG states, everything a resume restores."""

    step: int = 0
    epoch: int = 1                  # the epoch in progress; an epoch-end checkpoint already points at the next one
    batches_done: int = 0           # of `epoch`, in `epoch_batches` order
    best_f1: float = -1.0
    best_epoch: int = 0
    stale: int = 0                  # epochs without a better validation F1
    stopped: bool = False           # by early stopping
    history: list[dict] = field(default_factory=list)
    seen_samples: int = 0
    seen_tokens: int = 0
    train_seconds: float = 0.0      # time spent in training steps (not validation, not checkpoints)
    checkpoint_seconds: float = 0.0  # time spent writing checkpoints: reported only, never decides anything
    checkpoint_bytes: int = 0       # size of the newest checkpoint file
    recent_losses: list[float] = field(default_factory=list)     # since the last train_loss point
    metrics: list[tuple[int, int, dict, int]] = field(default_factory=list)  # (index, step, values, ms) not flushed
    metrics_emitted: int = 0

    def emit(self, values: dict[str, float]) -> None:
        # the emission time travels with the point: re-sending it after a crash mid-flush is then an exact
        # duplicate (same key, step, value and timestamp), which the tracker stores once
        self.metrics.append((self.metrics_emitted, self.step, values, int(time.time() * 1000)))
        self.metrics_emitted += 1


class Progress:
    """tqdm bar with loss and throughput on a terminal; plain log lines otherwise (CI, files, Prefect workers)."""

    def __init__(self, total: int, every: int, initial: int = 0):
        # log lines: every `every` steps, but no more than ~50 over the run (a CoNLL run has 5,000+ steps)
        self.every, self.bar = max(every, total // 50), None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, step: int, total: int, loss: float, samples_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{samples_per_s:.1f}")
        elif step % self.every == 0 or step == total:
            log.info("step %d/%d loss %.4f %.1f samples/s", step, total, loss, samples_per_s)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(model_path: str, tokenizer, labels: list[str], train_windows: list[Window], val_windows: list[Window],
          val_gold: list[list[str]], cfg: TrainConfig, seed: int, out_dir: Path, meta: dict,
          on_metrics: MetricsCallback | None = None) -> TrainResult:
    """Fine-tune, or continue from the newest checkpoint in `out_dir/checkpoints` (see the module docstring).

    Metric points reach `on_metrics` only once a checkpoint covers them: each checkpoint is followed by a flush.
    A resume recomputes everything after its checkpoint, so points handed out as they came would reach the tracker
    twice after a crash; the price is that the tracker shows them at checkpoint granularity, not live (lower
    `checkpoint_every` for a livelier chart). Points are numbered along the run and the count delivered is kept next
    to the checkpoints, so a crash during a flush, or a resume from an older checkpoint than the newest, neither
    loses nor repeats one."""
    from transformers import AutoModelForTokenClassification

    on_metrics = on_metrics or (lambda step, values, timestamp_ms: None)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(seed)
    device, autocast_dtype = select_device(cfg)
    model = AutoModelForTokenClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={t: i for i, t in enumerate(labels)}, ignore_mismatched_sizes=True).to(device)
    steps_per_epoch = math.ceil(len(train_windows) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    lr = default_lr(model.num_parameters(), total_steps) if cfg.lr == "auto" else float(cfg.lr)
    optimizer, scheduler = build_optimizer(model, cfg, lr, total_steps)
    pad_id = tokenizer.pad_token_id or 0
    lengths = [len(w.input_ids) for w in train_windows]
    best_dir, ckpt_dir = out_dir / "best", out_dir / "checkpoints"
    run_id = {"seed": seed, "train_windows": len(train_windows), "batch_size": cfg.batch_size, "epochs": cfg.epochs,
              "labels": labels}   # checkpoints of another run must not be resumed
    loop = resume(ckpt_dir, run_id, best_dir, model, optimizer, scheduler)
    s = LoopState(**loop) if loop is not None else LoopState()
    flush_metrics(s.metrics, ckpt_dir, on_metrics)   # points the checkpoint covers that a crash kept from on_metrics
    log.info("training on %s: %d windows, %d steps/epoch, lr %.2e", device, len(train_windows), steps_per_epoch, lr)

    def checkpoint(stop) -> None:
        started = time.perf_counter()
        path = save_checkpoint(ckpt_dir, s.step, model, optimizer, scheduler, cfg.keep_checkpoints,
                               {"run": run_id, "loop": asdict(s)})
        # the cost of checkpointing is reported (train/checkpoint_*), so `checkpoint_every` can be chosen knowingly
        s.checkpoint_seconds += time.perf_counter() - started
        s.checkpoint_bytes = path.stat().st_size
        flush_metrics(s.metrics, ckpt_dir, on_metrics)
        if stop.requested:
            raise TrainingInterrupted(f"{stop.signal}: stopped at step {s.step} (epoch {s.epoch}, batch {s.batches_done}) "
                                      f"after writing checkpoint {path.name}; train again on the same out_dir to continue")

    with stop_requests() as stop, contextlib.closing(Progress(total_steps, cfg.log_every, s.step)) as progress:
        while s.epoch <= cfg.epochs and not s.stopped:
            model.train()
            batches = epoch_batches(lengths, cfg.batch_size, seed, s.epoch, cfg.group_by_length)
            for batch_ids in batches[s.batches_done:]:   # a resumed epoch skips the batches already done
                started = time.perf_counter()
                batch = {k: v.to(device) for k, v in collate([train_windows[i] for i in batch_ids], pad_id).items()}
                with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                s.step, s.batches_done = s.step + 1, s.batches_done + 1
                s.recent_losses.append(loss.item())
                s.seen_samples += len(batch_ids)
                s.seen_tokens += int(batch["attention_mask"].sum())
                s.train_seconds += time.perf_counter() - started
                progress.update(s.step, total_steps, s.recent_losses[-1], s.seen_samples / s.train_seconds)
                if s.step % cfg.log_every == 0:
                    mean_loss = sum(s.recent_losses) / len(s.recent_losses)
                    s.emit({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]})
                    s.recent_losses.clear()
                if stop.requested or (cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0):
                    checkpoint(stop)
            tags, _ = predict_windows(model, val_windows, [len(g) for g in val_gold], dict(enumerate(labels)), pad_id,
                                      cfg.eval_batch_size, device, autocast_dtype)
            val = score(val_gold, tags)
            s.history.append({"epoch": s.epoch, "step": s.step, "val_f1": val.f1})
            s.emit({"val/f1": val.f1, "val/precision": val.precision, "val/recall": val.recall,
                    "train/epoch": s.epoch})   # names: docs/metrics.md
            log.info("epoch %d: validation F1 %.4f (best %.4f)", s.epoch, val.f1, max(s.best_f1, val.f1))
            if val.f1 > s.best_f1:
                s.best_f1, s.best_epoch, s.stale = val.f1, s.epoch, 0
                save_model(model, tokenizer, best_dir, meta)
            else:
                s.stale += 1
                if cfg.early_stopping_patience and s.stale >= cfg.early_stopping_patience:
                    log.info("early stopping: no better validation F1 for %d epochs", s.stale)
                    s.stopped = True
            s.epoch, s.batches_done, s.recent_losses = s.epoch + 1, 0, []
            checkpoint(stop)   # after validation and the best model: a resume from here starts the next epoch
        if stop.requested:     # arrived after the last checkpoint: that one is complete, the stop still holds
            raise TrainingInterrupted(f"{stop.signal}: stopped after the last step ({s.step}); the checkpoint is "
                                      "complete, train again on the same out_dir to finish")
    seconds = max(s.train_seconds, 1e-9)
    return TrainResult(best_dir, s.best_f1, s.best_epoch, s.epoch - 1, s.step, lr, s.seen_samples / seconds,
                       s.seen_tokens / seconds, s.history, s.checkpoint_seconds, s.checkpoint_bytes)


@contextlib.contextmanager
def stop_requests():
    """While training, the first SIGTERM or SIGINT (Ctrl-C) only sets `stop.requested` (and `stop.signal`): the loop
    checkpoints at the next step boundary, then raises TrainingInterrupted. A second signal goes to the handler that
    was there before (a command line exits at once: no waiting for the checkpoint). The previous handlers are back
    afterwards. Handlers can only be installed in the main thread; elsewhere signals keep their usual effect."""
    stop = SimpleNamespace(requested=False, signal="")
    if threading.current_thread() is not threading.main_thread():
        log.debug("train() runs outside the main thread: no signal handler, a pre-emption will not checkpoint")
        yield stop
        return
    watched = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.getsignal(s) for s in watched}

    def request_stop(signum, frame):
        if stop.requested:   # the second one: hand it to whoever handled it before
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            return
        stop.requested, stop.signal = True, signal.Signals(signum).name
        log.warning("%s: stopping at the next step boundary after a checkpoint (again to stop at once)",
                    stop.signal)

    for s in watched:
        signal.signal(s, request_stop)
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def save_model(model, tokenizer, target: Path, meta: dict) -> None:
    """Write to a sibling temp folder, then swap it in: a crash never leaves half a model at `target`."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_meta(tmp, **meta)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
