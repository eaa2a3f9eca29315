"""Which examples go into which optimizer step: a pure function of (seed, epoch), so a resumed run recomputes it.

Batches are sized by tokens (`train.batch_tokens`: padded positions per step; on GPUs sequences are padded to a
multiple of 8, `pad_multiple`) or, the Trainer recipe's way, by a fixed number of sequences (`train.batch_size`).
Length grouping sorts shuffled chunks of ~50 batches by length, so a batch pads little while every epoch still sees
another order; the batches are then shuffled again. On small data the token budget shrinks so that a run still makes
`train.min_steps` optimizer steps (a 300-sentence set would otherwise get ~10 steps, too few to learn anything).

With several processes (DDP) every process computes the same global batches and takes its share of each
(`shard`), so a run makes the same optimizer steps whatever its world size: the plan never depends on it. A batch
with fewer sequences than processes leaves some of them without one; such a process steps with a stand-in
sequence whose loss weight is 0 (nerflow.train), so the gradient is the batch's alone.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

PAD_MULTIPLE = 8   # tensor-core friendly widths on GPUs; also fewer distinct shapes for torch.compile
GROUP_CHUNK_BATCHES = 50


def padded(length: int, multiple: int = PAD_MULTIPLE) -> int:
    return -(-length // multiple) * multiple


def pad_multiple(device: str) -> int:
    """8 on CUDA (tensor cores want widths in multiples of 8). 1 on CPUs: there the extra positions are only extra
    work (CoNLL sentences of ~20 sub-tokens pad 1.19x instead of 1.02x, measured in docs/benchmarks.md)."""
    return PAD_MULTIPLE if str(device).startswith("cuda") else 1


@dataclass(frozen=True)
class BatchPlan:
    """How a run cuts its epochs: by `tokens` per step, or by `size` sequences per step (exactly one is set)."""

    tokens: int | None
    size: int | None
    group_by_length: bool = True

    def describe(self) -> str:
        return f"{self.tokens} tokens per step" if self.tokens else f"{self.size} sequences per step"


def plan_batches(lengths: list[int], epochs: int, batch_tokens: int | None, batch_size: int | None,
                 min_steps: int, group_by_length: bool = True) -> BatchPlan:
    """The batch plan of a run. A token budget is lowered (never below one padded longest sequence) until
    `epochs` epochs give at least `min_steps` steps: small data keeps enough updates to learn."""
    if batch_size:
        return BatchPlan(None, batch_size, group_by_length)
    if not batch_tokens:
        raise ValueError("set train.batch_tokens or train.batch_size")
    longest = padded(max(lengths, default=1))
    per_epoch = sum(padded(n) for n in lengths)
    budget = batch_tokens
    if min_steps and per_epoch * epochs < budget * min_steps:
        budget = max(longest, per_epoch * epochs // min_steps)
    return BatchPlan(budget, None, group_by_length)


def shrunk_batch_note(plan: BatchPlan, batch_tokens: int | None, min_steps: int, lr: float | str) -> str | None:
    """The line to log when `plan_batches` shrank the token budget for small data while `train.lr` is a fixed number:
    the rate was chosen for the configured batch, and a rate right for 16 long texts per step can be too high for 2
    (on 80 movie reviews, 2e-4 at 2 reviews per step left 2 of 3 seeds predicting one class; 1e-4 learned:
    docs/benchmarks.md, "Movie reviews against TF-IDF"). `lr: auto` scales with the batch it gets; None otherwise."""
    if lr == "auto" or not plan.tokens or not batch_tokens or plan.tokens >= batch_tokens:
        return None
    scaled = float(lr) * (plan.tokens / batch_tokens) ** (2 / 3)   # lr: auto's rule (nerflow.optim.default_lr)
    return (f"small data: train.min_steps={min_steps} shrank the batches to {plan.tokens} tokens "
            f"(train.batch_tokens={batch_tokens}) and train.lr={float(lr):g} stays as set; a rate chosen for the "
            f"larger batch can be too high for this one (a model stuck predicting one class): consider "
            f"train.lr={scaled:.2g} (scaled with the batch as lr: auto scales), or train.min_steps=0")


def epoch_batches(lengths: list[int], plan: BatchPlan, seed: int, epoch: int) -> list[list[int]]:
    """Example indices per step of one epoch, a pure function of its arguments."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if plan.group_by_length:
        mean = max(1, sum(lengths) // max(len(lengths), 1))
        per_batch = plan.size or max(1, plan.tokens // padded(mean))
        chunk = per_batch * GROUP_CHUNK_BATCHES
        order = [i for c in range(0, len(order), chunk) for i in sorted(order[c:c + chunk], key=lambda i: -lengths[i])]
    if plan.size:
        batches = [order[b:b + plan.size] for b in range(0, len(order), plan.size)]
    else:
        batches = by_tokens(order, lengths, plan.tokens)
    if plan.group_by_length:
        rng.shuffle(batches)
    return batches


def by_tokens(order: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Cut `order` into consecutive batches whose padded size (sequences x widest, rounded up to PAD_MULTIPLE)
    stays within `budget`; a sequence wider than the budget goes alone."""
    batches: list[list[int]] = []
    current: list[int] = []
    widest = 0
    for i in order:
        width = max(widest, padded(lengths[i]))
        if current and width * (len(current) + 1) > budget:
            batches.append(current)
            current, width = [], padded(lengths[i])
        current.append(i)
        widest = width
    if current:
        batches.append(current)
    return batches


def total_steps(lengths: list[int], plan: BatchPlan, seed: int, epochs: int) -> int:
    return sum(len(epoch_batches(lengths, plan, seed, e)) for e in range(1, epochs + 1))


def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This process's share of a global batch: every world_size-th sequence (the batch is sorted by length within
    its chunk, so the shares carry nearly the same number of tokens). Empty when the batch has fewer sequences
    than processes."""
    return batch[rank::world_size]


def inference_batches(lengths: list[int], batch_tokens: int | None, batch_size: int) -> list[list[int]]:
    """Indices sorted by length (little padding), cut at `batch_tokens` padded positions and at most
    `batch_size` sequences per batch."""
    order = sorted(range(len(lengths)), key=lambda k: lengths[k])
    if not batch_tokens:
        return [order[b:b + batch_size] for b in range(0, len(order), batch_size)]
    return [part[b:b + batch_size] for part in by_tokens(order, lengths, batch_tokens)
            for b in range(0, len(part), batch_size)]


# Padded positions per forward pass when predicting (`nerflow predict`, the served model, the gate's scorer). A CPU
# is fastest per position at a few thousand: measured on a 2-core Xeon with AMX (MiniLM, docs/benchmarks.md "Serving
# fast"), bf16 ran windows of 256 at 162 windows/s in passes of 2,048 positions and 108 in passes of 16,384, and
# short sentences fastest at 4,096 (1,712 a second against 1,083 at 8,192; fp32 370 against 348): the activations of
# a smaller pass stay in the caches. A GPU needs large passes to be busy.
CPU_PREDICT_TOKENS = 4096
GPU_PREDICT_TOKENS = 16384
PREDICT_MAX_SEQUENCES = 256   # a pass of very short sequences still stops here


def predict_batch_tokens(device: str) -> int:
    """The padded positions per forward pass at prediction on `device` ("cpu", "cuda", "cuda:1", ...)."""
    return CPU_PREDICT_TOKENS if device.split(":")[0] == "cpu" else GPU_PREDICT_TOKENS
