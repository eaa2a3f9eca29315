"""Fine-tuning stage: windows -> the best-on-validation weights, in this process or data-parallel through torchrun
(nerflow.launch); loss and validation scores reach MLflow as checkpoints cover them (see nerflow.train),
throughput at the end."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from nerflow import launch
from nerflow import task_types
from nerflow.config import PipelineConfig
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import run_stage, stage_task


def train_job(cfg: PipelineConfig, step: StagePlan, model_path: str, validated: dict, tokenized: dict) -> dict:
    """What the training processes need, as data (nerflow.launch). Its folder is keyed like the stage, so a
    retry, a resume and the other nodes of a multi-machine run all find the same checkpoints."""
    extra = task_types.get(cfg.task).job(cfg)
    labels = json.loads((Path(validated["path"]) / "labels.json").read_text())
    return {**extra, "task": cfg.task, "model_path": model_path, "validated": validated["path"],
            "tokenized": tokenized["path"], "train": cfg.train.model_dump(mode="json"), "seed": cfg.seed,
            "out_dir": str(work_dir(cfg, step)),
            "meta": {**extra.get("meta", {}), "labels": labels, "base_model": cfg.model.name_or_path}}


def work_dir(cfg: PipelineConfig, step: StagePlan) -> Path:
    return Path(cfg.cache_dir) / "train" / f"{step.key}.work"   # checkpoints live here, across attempts


@stage_task("train")
def train_task(cfg: PipelineConfig, step: StagePlan, model_path: str, validated: dict, tokenized: dict,
               run_id: str) -> dict:
    client = tracking.configure()

    def compute(out: Path) -> None:
        job = train_job(cfg, step, model_path, validated, tokenized)
        result = launch.train(job, on_metrics=lambda step, values, ms: tracking.log_metrics(client, run_id, values,
                                                                                               step, ms))
        shutil.copytree(result["best_dir"], out / "model")   # work/ stays resumable until the rmtree below
        summary = {k: v for k, v in result.items() if k != "best_dir"}
        (out / "train.json").write_text(json.dumps(summary, indent=1))
        shutil.rmtree(job["out_dir"], ignore_errors=True)  # done: its checkpoints are no longer needed for a resume

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    summary = json.loads((Path(result["path"]) / "train.json").read_text())
    tracking.log_metrics(client, run_id, train_summary_metrics(summary))
    tracking.log_tags(client, run_id, {"learning_rate": summary["lr"], "train.batches": summary.get("batches", ""),
                                       "train.world_size": summary.get("world_size", 1)})
    return {**result, "model_dir": str(Path(result["path"]) / "model")}


def train_summary_metrics(summary: dict) -> dict[str, float]:
    """The train stage's step-0 metrics (docs/metrics.md). The best epoch's validation F1 is not among them: the
    evaluate stage logs the registered weights' scores as `val/best_*`, one name per number."""
    metrics = {"train/best_epoch": summary["best_epoch"], "train/steps": summary["steps"],
               "train/samples_per_s": summary["train_samples_per_s"],
               "train/tokens_per_s": summary["train_tokens_per_s"],
               # a summary cached before these existed has none: 0 reads as "not measured"
               "train/checkpoint_seconds": summary.get("checkpoint_seconds", 0.0),
               "train/checkpoint_bytes": summary.get("checkpoint_bytes", 0)}
    for key, name in (("padding_ratio", "train/padding_ratio"), ("train_seconds", "train/train_seconds"),
                      ("peak_memory_bytes", "train/peak_memory_bytes"),
                      ("frozen_parameters", "train/frozen_parameters")):
        if key in summary:
            metrics[name] = summary[key]
    return metrics
