"""Tokenization stage: canonical splits -> model inputs on disk (Arrow), keyed by data + tokenizer + settings."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from nerflow import task_types
from nerflow.outputs import Tokenized, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import RunContext

log = logging.getLogger("nerflow.tokenize")


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    import datasets
    from transformers import AutoTokenizer

    # "Saving the dataset (1/1 shards)" bars for a write that takes milliseconds: noise in any log
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(ctx.plan.model_path, revision=ctx.plan.model_revision)
    entry = task_types.entry(ctx.cfg.task, "tokenize")
    stats = entry.tokenize_validated(tokenizer, Path(upstream["validate"].path), ctx.cfg.tokenize, out)
    (out / "stats.json").write_text(json.dumps(stats))
    write_fields(out, {"stats": stats})
    if "sentences_per_s" in stats:
        log.info("tokenized at %.0f sentences/s (%d extra windows for long training sentences)",
                 stats["sentences_per_s"], stats.get("extra_windows_train", 0))
    else:
        log.info("tokenized at %.0f texts/s; train: %.0f sub-tokens on average; %.1f%% of texts cut "
                 "(tokenize.long_documents=%s)", stats["texts_per_s"], stats.get("tokens_mean_train", 0),
                 100 * stats.get("truncated_share", 0.0), getattr(ctx.cfg.tokenize, "long_documents", "-"))


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Tokenized) -> Tokenized:
    tracking.log_metrics(tracking.configure(), ctx.run_id, {f"tokenize/{k}": v for k, v in output.stats.items()})
    return output
