"""Fine-tuning, task-blind: token-budget batches, fused AdamW + linear warmup/decay, clipping, early stopping on the
validation score, mixed precision on GPUs, data-parallel across processes.

The whole step is in `fit`'s inner loop. What differs per task (the model head, collation, the loss, validation,
saving) comes in a `Trainable`; tracking is a callback (`on_metrics(step, values, timestamp_ms)`): this module
imports neither a task nor a tracker. The weights kept in `out_dir/best` are those of the epoch with the best
validation score.

No host-device synchronisation per step: the loss is summed on the device and read every `log_every` steps (and,
with several processes, averaged over them there, together with the stop flag).

Resumable: `out_dir/checkpoints` gets a checkpoint every `checkpoint_every` steps and at each epoch end (model,
optimizer, schedule, every rank's RNG states, the loop's bookkeeping; see `nerflow.checkpoints`). `fit` called
again on the same `out_dir` continues from the newest intact one, mid-epoch included, and on CPU ends with
exactly the weights of an uninterrupted run; a kill at any point, a best-model swap included, is repaired first.
SIGTERM (a pre-emption notice) or SIGINT (Ctrl-C) writes a checkpoint at the next step boundary and raises
`TrainingInterrupted`.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nerflow import adapters, batching, distributed, optim
from nerflow.checkpoints import MetricsCallback, flush_metrics, recover, resume, rng_state, save_checkpoint
from nerflow.config import TrainConfig
from nerflow.devices import peak_memory, seed_everything, select_device, weights_digest
from nerflow.optim import default_lr
from nerflow.progress import (
    Progress,
    StepClock,
    TrainingInterrupted,  # noqa: F401 - raised here; defined where no torch is needed
    stop_requests,
)
from nerflow.trainable import Trainable, TrainResult

log = logging.getLogger(__name__)




@dataclass
class LoopState:
    """The loop's bookkeeping: with weights, optimizer, schedule and RNG states, everything a resume restores."""

    step: int = 0
    epoch: int = 1                  # the epoch in progress; an epoch-end checkpoint already points at the next one
    batches_done: int = 0           # of `epoch`, in `epoch_batches` order
    best_score: float = -1.0
    best_epoch: int = 0
    stale: int = 0                  # epochs without a better validation score
    stopped: bool = False           # by early stopping
    history: list[dict] = field(default_factory=list)
    seen_samples: int = 0
    seen_tokens: int = 0            # real tokens
    seen_padded: int = 0            # padded positions
    train_seconds: float = 0.0      # time spent in training steps (not validation, not checkpoints)
    checkpoint_seconds: float = 0.0  # time spent writing checkpoints: reported only, never decides anything
    checkpoint_bytes: int = 0       # size of the newest checkpoint file
    loss_sum: float = 0.0           # of the steps since the last train/loss point (kept on the device between)
    loss_steps: int = 0
    metrics: list[tuple[int, int, dict, int]] = field(default_factory=list)  # (index, step, values, ms) not flushed
    metrics_emitted: int = 0

    def emit(self, values: dict[str, float]) -> None:
        # the emission time travels with the point: re-sending it after a crash mid-flush is then an exact
        # duplicate (same key, step, value and timestamp), which the tracker stores once
        self.metrics.append((self.metrics_emitted, self.step, values, int(time.time() * 1000)))
        self.metrics_emitted += 1


def fit(job: Trainable, cfg: TrainConfig, seed: int, out_dir: Path, on_metrics: MetricsCallback | None = None,
        should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Fine-tune, or continue from the newest checkpoint in `out_dir/checkpoints` (see the module docstring).

    Metric points reach `on_metrics` only once a checkpoint covers them: each checkpoint is followed by a flush.
    A resume recomputes everything after its checkpoint, so points handed out as they came would reach the tracker
    twice after a crash; the price is that the tracker shows them at checkpoint granularity, not live (lower
    `checkpoint_every` for a livelier chart). Points are numbered along the run and the count delivered is kept next
    to the checkpoints, so a crash during a flush, or a resume from an older checkpoint than the newest, neither
    loses nor repeats one. With several processes every rank trains and only rank 0 reports, writes checkpoints
    and saves the best model. `should_stop` is asked at every exchange (every `log_every` steps, each epoch end):
    a stop relayed from outside the process, like a signal."""
    world = distributed.current()
    on_metrics = on_metrics if world.main and on_metrics else (lambda step, values, timestamp_ms: None)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(seed)
    device, autocast_dtype = select_device(cfg, world)
    model = job.load_model().to(device)
    n_params = model.num_parameters()
    pad = batching.pad_multiple(device)
    if cfg.adapter == "none":
        optim.freeze(model, cfg.freeze)
    else:   # peft freezes the whole base itself: train.freeze is unused (nerflow.adapters)
        model = adapters.wrap(model, cfg)
    plan = batching.plan_batches(job.lengths, cfg.epochs, cfg.batch_tokens, cfg.batch_size, cfg.min_steps,
                                 cfg.group_by_length)
    total_steps = batching.total_steps(job.lengths, plan, seed, cfg.epochs)
    mean_batch = len(job.lengths) * cfg.epochs / max(total_steps, 1)
    lr = default_lr(n_params, len(job.lengths) * cfg.epochs, mean_batch, cfg.adapter) if cfg.lr == "auto" \
        else float(cfg.lr)
    optimizer, scheduler = optim.build_optimizer(model, cfg.weight_decay, lr,
                                                 optim.warmup_steps(total_steps, cfg.warmup_ratio), total_steps)
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
    extra = {"scaler": scaler} if scaler is not None else {}
    params = optim.trainable_parameters(model)
    step_model = model
    if world.distributed:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[world.local_rank] if device.startswith("cuda") else None)
    if cfg.compile:
        step_model = torch.compile(step_model, dynamic=True)
    best_dir, ckpt_dir = out_dir / "best", out_dir / "checkpoints"
    run_id = {**job.identity, "seed": seed, "examples": len(job.examples), "batches": plan.describe(),
              "epochs": cfg.epochs, "world_size": world.size}   # checkpoints of another run must not be resumed
    if world.main:   # the writes of a resume (repairs, setting aside) by one process, before any rank reads
        recover(ckpt_dir, best_dir, run_id)
    distributed.barrier(world)
    loop = resume(ckpt_dir, run_id, best_dir, model, optimizer, scheduler, world.rank, extra)
    s = LoopState(**loop) if loop is not None else LoopState()
    if world.main:
        flush_metrics(s.metrics, ckpt_dir, on_metrics)   # points the checkpoint covers that a crash kept back
    s.metrics.clear()
    per_epoch = total_steps / max(cfg.epochs, 1)   # token batches may vary a little from epoch to epoch
    if world.main and (said := batching.shrunk_batch_note(plan, cfg.batch_tokens, cfg.min_steps, cfg.lr)):
        log.info(said)   # not a warning: tiny test fixtures do this on purpose, and a run may be right to
    log.info("training on %s x%d: %d examples, %s, %d steps (%s steps/epoch), lr %.2e, %s parameters frozen, "
             "%s trained (%s)", device, world.size, len(job.examples), plan.describe(), total_steps,
             f"{per_epoch:g}" if per_epoch.is_integer() else f"~{per_epoch:.1f}", lr,
             f"{sum(p.numel() for p in model.parameters() if not p.requires_grad):,}",
             f"{adapters.trainable_count(model):,}",
             f"train.freeze={cfg.freeze}" if cfg.adapter == "none" else f"train.adapter={cfg.adapter}")
    loss_sum = torch.tensor(s.loss_sum, device=device)

    clock = StepClock()

    def checkpoint() -> None:
        s.loss_sum = float(loss_sum)   # reads the device once per checkpoint (after the steps queued on it)
        timing = clock.running
        s.train_seconds += clock.stop()   # the checkpoint's seen_samples come with their time
        started = time.perf_counter()
        rng = distributed.gather(rng_state(), world)
        if world.main:
            path = save_checkpoint(ckpt_dir, s.step, model, optimizer, scheduler, cfg.keep_checkpoints,
                                   {"run": run_id, "loop": asdict(s)}, rng, extra)
            s.checkpoint_bytes = path.stat().st_size
            flush_metrics(s.metrics, ckpt_dir, on_metrics)
        s.metrics.clear()
        # the cost of checkpointing is reported (train/checkpoint_*), so `checkpoint_every` can be chosen knowingly
        s.checkpoint_seconds += time.perf_counter() - started
        if timing:
            clock.start()

    def interrupted(signal_name: str) -> TrainingInterrupted:
        return TrainingInterrupted(f"{signal_name or 'stop requested'}: stopped at step {s.step} "
                                   f"(epoch {s.epoch}, batch {s.batches_done}) after writing checkpoint "
                                   f"step-{s.step:08d}; train again on the same out_dir to continue")

    progress = Progress(total_steps, cfg.log_every, s.step, s.seen_samples, s.train_seconds)
    with stop_requests() as stop, contextlib.closing(progress):
        while s.epoch <= cfg.epochs and not s.stopped:
            step_model.train()
            batches = batching.epoch_batches(job.lengths, plan, seed, s.epoch)
            if job.start_epoch:
                job.start_epoch(s.epoch)
            clock.start()
            for global_batch in batches[s.batches_done:]:   # a resumed epoch skips the batches already done
                share = batching.shard(global_batch, world.rank, world.size)
                # a process left without a sequence steps on a stand-in with loss weight 0: DDP needs every rank
                weight = 1.0 if share else 0.0
                batch = job.collate([job.examples[i] for i in share or global_batch[:1]], multiple=pad)
                s.seen_padded += batch["input_ids"].numel() * world.size
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                labels = batch.pop("labels")
                with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype,
                                    enabled=autocast_dtype is not None):
                    logits = job.forward(step_model, batch) if job.forward else step_model(**batch).logits
                # the global batch's mean: DDP averages gradients over ranks, hence x world size
                loss = job.loss_sum(logits.float(), labels) * (weight * world.size /
                                                               max(sum(job.targets[i] for i in global_batch), 1))
                (scaler.scale(loss) if scaler else loss).backward()
                if scaler:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach() / world.size
                s.step, s.batches_done, s.loss_steps = s.step + 1, s.batches_done + 1, s.loss_steps + 1
                s.seen_samples += len(global_batch)
                s.seen_tokens += sum(job.lengths[i] for i in global_batch)
                stopping = stop.requested
                if s.step % cfg.log_every == 0:
                    asked = stop.requested or bool(should_stop and should_stop())
                    total, stopping = distributed.sum_and_any(loss_sum, asked, world)
                    mean_loss = float(total) / s.loss_steps
                    s.emit({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]})
                    loss_sum.zero_()
                    s.loss_steps = 0
                    progress.loss = mean_loss
                elif world.distributed:
                    stopping = False   # ranks agree on a stop only where they exchange the flag
                progress.update(s.step, s.seen_samples, s.train_seconds + clock.elapsed())
                if stopping or (cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0):
                    checkpoint()
                    # one process may also stop for a signal that came during the checkpoint: it is complete
                    if stopping or (not world.distributed and stop.requested):
                        raise interrupted(stop.signal)
            if device.startswith("cuda"):
                torch.cuda.synchronize()   # the epoch's queued work belongs to its training time
            s.train_seconds += clock.stop()
            val = distributed.from_main(job.validate(model, device, autocast_dtype) if world.main else None, world)
            score = val[job.score]
            s.history.append({"epoch": s.epoch, "step": s.step, f"val_{job.score}": score})
            s.emit({**{f"val/{k}": v for k, v in val.items()}, "train/epoch": s.epoch})   # names: docs/metrics.md
            log.info("epoch %d: validation %s %.4f (best %.4f)", s.epoch, job.score, score, max(s.best_score, score))
            if score > s.best_score:
                s.best_score, s.best_epoch, s.stale = score, s.epoch, 0
                if world.main:
                    job.save(model, best_dir)
            else:
                s.stale += 1
                if cfg.early_stopping_patience and s.stale >= cfg.early_stopping_patience:
                    log.info("early stopping: no better validation %s for %d epochs", job.score, s.stale)
                    s.stopped = True
            s.epoch, s.batches_done = s.epoch + 1, 0
            checkpoint()   # after validation and the best model: a resume from here starts the next epoch
            if distributed.any_rank(stop.requested or bool(should_stop and should_stop()), world):
                raise interrupted(stop.signal)
    distributed.barrier(world)   # the best model is on disk before any rank returns
    seconds = max(s.train_seconds, 1e-9)
    return TrainResult(best_dir, s.best_score, s.best_epoch, s.epoch - 1, s.step, lr, s.seen_samples / seconds,
                       s.seen_tokens / seconds, s.seen_padded / max(s.seen_tokens, 1), s.train_seconds, s.history,
                       s.checkpoint_seconds, s.checkpoint_bytes, world.size, plan.describe(),
                       sum(p.numel() for p in model.parameters() if not p.requires_grad),
                       adapters.trainable_count(model),
                       adapters.folder_bytes(best_dir / adapters.ADAPTER_DIR) if cfg.adapter != "none" else 0,
                       peak_memory(device), weights_digest(model), s.seen_tokens)
