"""Fine-tuning stage: windows -> the best-on-validation weights, in this process or data-parallel through torchrun
(nerflow.launch); loss and validation scores reach MLflow as checkpoints cover them (see nerflow.train),
throughput at the end."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from nerflow import adapters, launch, task_types
from nerflow.outputs import ADAPTER_ARTIFACT, Trained, write_fields
from nerflow.plan import Plan, StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import RunContext


def train_job(ctx: RunContext, upstream: dict) -> dict:
    """What the training processes need, as data (nerflow.launch). Its folder is keyed like the stage, so a
    retry, a resume and the other nodes of a multi-machine run all find the same checkpoints."""
    cfg = ctx.cfg
    extra = task_types.entry(cfg.task, "train").job_fields(cfg)
    validated = Path(upstream["validate"].path)
    labels = json.loads((validated / "labels.json").read_text())
    base = {"base_model": cfg.model.name_or_path,   # a hub model: the commit its key holds, recorded with the model
            **({"base_model_revision": ctx.plan.model_revision} if ctx.plan.model_revision else {})}
    model_path = ctx.plan.model_path
    if "pretrain" in upstream:   # the optional stage ran: start from its model (a local folder, no revision)
        model_path = upstream["pretrain"].model_dir
        base = {"base_model": cfg.model.name_or_path, "pretrained": upstream["pretrain"].key}
    return {**extra, "task": cfg.task, "model_path": model_path, "validated": str(validated),
            "tokenized": upstream["tokenize"].path, "train": cfg.train.model_dump(mode="json"), "seed": cfg.seed,
            "out_dir": str(work_dir(ctx.plan, cfg)), "meta": {**extra.get("meta", {}), "labels": labels, **base}}


def work_dir(plan: Plan, cfg) -> Path:
    return Path(cfg.cache_dir) / "train" / f"{plan.stages['train'].key}.work"   # checkpoints live here, across attempts


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    client = tracking.configure()
    job = train_job(ctx, upstream)

    def on_metrics(step_: int, values: dict[str, float], ms: int) -> None:
        tracking.log_metrics(client, ctx.run_id, values, step_, ms)
        if ctx.on_epoch is not None and "train/epoch" in values:   # an epoch's validation, logged: a trial's pruner
            ctx.on_epoch(values)

    result = launch.train(job, on_metrics=on_metrics)
    shutil.copytree(result["best_dir"], out / "model")   # work/ stays resumable until the rmtree below
    if (out / "model" / adapters.ADAPTER_DIR).is_dir():    # LoRA: the version serves the merged model alone, the
        (out / "model" / adapters.ADAPTER_DIR).rename(out / ADAPTER_ARTIFACT)   # adapter is an extra artifact
    summary = {k: v for k, v in result.items() if k != "best_dir"}
    (out / "train.json").write_text(json.dumps(summary, indent=1))
    write_fields(out, {"summary": summary})
    shutil.rmtree(job["out_dir"], ignore_errors=True)  # done: its checkpoints are no longer needed for a resume


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Trained) -> Trained:
    client, summary = tracking.configure(), output.summary
    tracking.log_metrics(client, ctx.run_id, train_summary_metrics(summary))
    if output.adapter_dir:   # LoRA: the adapter with its task head, a few MB, beside the merged model
        client.log_artifacts(ctx.run_id, output.adapter_dir, ADAPTER_ARTIFACT)
    tracking.log_tags(client, ctx.run_id, {"learning_rate": summary["lr"], "train.batches": summary.get("batches", ""),
                                           "train.world_size": summary.get("world_size", 1)})
    return output


def train_summary_metrics(summary: dict) -> dict[str, float]:
    """The train stage's step-0 metrics (docs/metrics.md). The best epoch's validation F1 is not among them: the
    evaluate stage logs the registered weights' scores as `val/best_*`, one name per number."""
    metrics = {"train/best_epoch": summary["best_epoch"], "train/steps": summary["steps"],
               "train/samples_per_s": summary["train_samples_per_s"],
               "train/tokens_per_s": summary["train_tokens_per_s"],
               "train/checkpoint_seconds": summary.get("checkpoint_seconds", 0.0),
               "train/checkpoint_bytes": summary.get("checkpoint_bytes", 0)}
    for key, name in (("padding_ratio", "train/padding_ratio"), ("train_seconds", "train/train_seconds"),
                      ("peak_memory_bytes", "train/peak_memory_bytes"),
                      ("frozen_parameters", "train/frozen_parameters"),
                      ("trainable_parameters", "train/trainable_parameters"),
                      ("adapter_bytes", "train/adapter_bytes")):
        if key in summary:
            metrics[name] = summary[key]
    return metrics
