"""Fine-tuning stage: windows -> the best-on-validation weights; loss and validation F1 reach MLflow as checkpoints
cover them (see nerflow.train), throughput at the end."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from nerflow import data, tokenization, train
from nerflow.config import PipelineConfig
from nerflow.plan import StagePlan
from nerflow.tasks import tracking
from nerflow.tasks.stage import run_stage, stage_task


@stage_task("train")
def train_task(cfg: PipelineConfig, step: StagePlan, model_path: str, validated: dict, tokenized: dict,
               run_id: str) -> dict:
    client = tracking.configure()

    def compute(out: Path) -> None:
        from transformers import AutoTokenizer

        src, windows = Path(validated["path"]), Path(tokenized["path"])
        labels = json.loads((src / "labels.json").read_text())
        val_gold = [s.tags for s in data.read_split(src / "validation.jsonl")]
        work = Path(cfg.cache_dir) / "train" / f"{step.key}.work"  # checkpoints live here, across attempts
        result = train.train(
            model_path, AutoTokenizer.from_pretrained(model_path), labels,
            tokenization.load_windows(windows / "train"), tokenization.load_windows(windows / "validation"),
            val_gold, cfg.train, cfg.seed, work,
            meta={"labels": labels, "max_length": cfg.tokenize.max_length, "stride": cfg.tokenize.stride,
                  "base_model": cfg.model.name_or_path},
            on_metrics=lambda step, values, ms: tracking.log_metrics(client, run_id, values, step, ms))
        shutil.copytree(result.best_dir, out / "model")   # work/ stays resumable until the rmtree below
        summary = {k: v for k, v in asdict(result).items() if k != "best_dir"}
        (out / "train.json").write_text(json.dumps(summary, indent=1))
        shutil.rmtree(work, ignore_errors=True)  # done: its checkpoints are no longer needed for a resume

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    summary = json.loads((Path(result["path"]) / "train.json").read_text())
    tracking.log_metrics(client, run_id, train_summary_metrics(summary))
    tracking.log_tags(client, run_id, {"learning_rate": summary["lr"]})
    return {**result, "model_dir": str(Path(result["path"]) / "model")}


def train_summary_metrics(summary: dict) -> dict[str, float]:
    """The train stage's step-0 metrics (docs/metrics.md). The best epoch's validation F1 is not among them: the
    evaluate stage logs the registered weights' scores as `val/best_*`, one name per number."""
    return {"train/best_epoch": summary["best_epoch"], "train/steps": summary["steps"],
            "train/samples_per_s": summary["train_samples_per_s"], "train/tokens_per_s": summary["train_tokens_per_s"],
            # a summary cached before these existed has none: 0 reads as "not measured"
            "train/checkpoint_seconds": summary.get("checkpoint_seconds", 0.0),
            "train/checkpoint_bytes": summary.get("checkpoint_bytes", 0)}
