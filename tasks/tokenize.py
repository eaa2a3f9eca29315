"""Tokenization stage: canonical splits -> model windows on disk (Arrow), keyed by data + tokenizer + settings."""
from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from nerflow import cache, data, models, tokenization
from nerflow.config import PipelineConfig
from nerflow.tasks import tracking
from nerflow.tasks.stage import run_stage

CODE = cache.code_fingerprint(["data", "tokenization", "models"], ["tokenizers", "transformers", "datasets"])


@task(name="tokenize")
def tokenize_task(cfg: PipelineConfig, validated: dict, run_id: str) -> dict:
    client = tracking.configure()
    model_path = models.resolve_model(cfg.model.name_or_path, cfg.cache_dir)
    model_hash = models.model_fingerprint(model_path, cfg.model.revision)
    parts = {"data": validated["key"], "tokenizer": model_hash, "code": CODE,
             "settings": cfg.tokenize.model_dump(mode="json")}
    stats: dict[str, float] = {}

    def compute(out: Path) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path, revision=cfg.model.revision)
        src = Path(validated["path"])
        corpus = {split: data.read_split(src / f"{split}.jsonl") for split in data.SPLITS}
        labels = json.loads((src / "labels.json").read_text())
        stats.update(tokenization.tokenize_corpus(tokenizer, corpus, labels, cfg.tokenize, out))
        (out / "stats.json").write_text(json.dumps(stats))

    result = run_stage(client, run_id, cfg.cache_dir, "tokenize", parts, compute)
    stats = stats or json.loads((Path(result["path"]) / "stats.json").read_text())
    tracking.log_metrics(client, run_id, {f"tokenize_{k}": v for k, v in stats.items()})
    return {**result, "model_path": model_path, "model_hash": model_hash}
