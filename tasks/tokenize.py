"""Tokenization stage: canonical splits -> model inputs on disk (Arrow), keyed by data + tokenizer + settings."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from nerflow import task_types
from nerflow.config import PipelineConfig
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import run_stage, stage_task

log = logging.getLogger("nerflow.tokenize")


@stage_task("tokenize")
def tokenize_task(cfg: PipelineConfig, step: StagePlan, model_path: str, validated: dict, run_id: str) -> dict:
    client = tracking.configure()
    stats: dict[str, float] = {}
    kind = task_types.get(cfg.task)

    def compute(out: Path) -> None:
        import datasets
        from transformers import AutoTokenizer

        # "Saving the dataset (1/1 shards)" bars for a write that takes milliseconds: noise in any log
        datasets.disable_progress_bars()
        tokenizer = AutoTokenizer.from_pretrained(model_path, revision=cfg.model.revision)
        stats.update(kind.tokenize(tokenizer, Path(validated["path"]), cfg.tokenize, out))
        (out / "stats.json").write_text(json.dumps(stats))

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    stats = stats or json.loads((Path(result["path"]) / "stats.json").read_text())
    if not result["reused"]:
        if "sentences_per_s" in stats:
            log.info("tokenized at %.0f sentences/s (%d extra windows for long training sentences)",
                     stats["sentences_per_s"], stats.get("extra_windows_train", 0))
        else:
            log.info("tokenized at %.0f texts/s; %s; %.1f%% of texts cut (tokenize.long_documents=%s)",
                     stats["texts_per_s"], ", ".join(f"{s}: {stats.get(f'tokens_mean_{s}', 0):.0f} sub-tokens "
                                                     f"on average" for s in ("train",)),
                     100 * stats.get("truncated_share", 0.0), cfg.tokenize.long_documents)
    tracking.log_metrics(client, run_id, {f"tokenize/{k}": v for k, v in stats.items()})
    return result
