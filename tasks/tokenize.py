"""Tokenization stage: canonical splits -> model windows on disk (Arrow), keyed by data + tokenizer + settings."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from nerflow import data, tokenization
from nerflow.config import PipelineConfig
from nerflow.plan import StagePlan
from nerflow.tasks import tracking
from nerflow.tasks.stage import run_stage, stage_task

log = logging.getLogger("nerflow.tokenize")


@stage_task("tokenize")
def tokenize_task(cfg: PipelineConfig, step: StagePlan, model_path: str, validated: dict, run_id: str) -> dict:
    client = tracking.configure()
    stats: dict[str, float] = {}

    def compute(out: Path) -> None:
        import datasets
        from transformers import AutoTokenizer

        # "Saving the dataset (1/1 shards)" bars for a write that takes milliseconds: noise in any log
        datasets.disable_progress_bars()
        tokenizer = AutoTokenizer.from_pretrained(model_path, revision=cfg.model.revision)
        src = Path(validated["path"])
        corpus = {split: data.read_split(src / f"{split}.jsonl") for split in data.SPLITS}
        labels = json.loads((src / "labels.json").read_text())
        stats.update(tokenization.tokenize_corpus(tokenizer, corpus, labels, cfg.tokenize, out))
        (out / "stats.json").write_text(json.dumps(stats))

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    stats = stats or json.loads((Path(result["path"]) / "stats.json").read_text())
    if not result["reused"]:
        log.info("tokenized at %.0f sentences/s (%d extra windows for long training sentences)",
                 stats["sentences_per_s"], stats.get("extra_windows_train", 0))
    tracking.log_metrics(client, run_id, {f"tokenize/{k}": v for k, v in stats.items()})
    return result
