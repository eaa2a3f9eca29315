"""Distill stage (optional: `distill.enabled`): a student with fewer encoder layers trained from the fine-tuned model
by the task's own training code (nerflow.distill), in this process or data-parallel through torchrun like `train`.
Its loss and validation scores go to the pipeline's MLflow run as `distill/*` as checkpoints cover them; the layers
kept, the best score and the time at the end. The student's model folder is what `export` measures as
`onnx-int8-distilled`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from nerflow import launch
from nerflow.outputs import Distilled, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import RunContext
from nerflow.prefect_tasks.train import train_job

SUMMARY = ("layers", "teacher_layers", "best_score", "teacher_score", "best_epoch", "epochs_run", "steps",
           "train_seconds", "train_samples_per_s")


def distill_job(ctx: RunContext, step: StagePlan, upstream: dict) -> dict:
    """The train stage's job with the fine-tuned model as the model to start from, the distill settings, and a
    work folder keyed like this stage (a retry or resume finds its checkpoints)."""
    cfg, trained = ctx.cfg, upstream["train"]
    job = train_job(ctx, upstream)
    meta = {k: v for k, v in job["meta"].items() if k != "base_model_revision"}   # a local folder has no revision
    return {**job, "entry": "nerflow.distill:distill_job", "model_path": trained.model_dir,
            "distill": cfg.distill.model_dump(mode="json"),
            "out_dir": str(Path(cfg.cache_dir) / "distill" / f"{step.key}.work"),
            "meta": {**meta, "distilled_from": trained.key, "distill_layers": cfg.distill.layers}}


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    from transformers import AutoConfig

    from nerflow.distill import kept_layers

    client = tracking.configure()
    job = distill_job(ctx, step, upstream)

    def on_metrics(step_: int, values: dict[str, float], ms: int) -> None:
        tracking.log_metrics(client, ctx.run_id, tracking.regrouped(values, "distill"), step_, ms)

    result = launch.train(job, on_metrics=on_metrics)
    shutil.copytree(result["best_dir"], out / "model")   # the work folder stays resumable until the rmtree below
    teacher_layers = AutoConfig.from_pretrained(job["model_path"]).num_hidden_layers
    teacher = upstream["train"].summary
    summary = {**{k: v for k, v in result.items() if k not in ("best_dir", "history")},
               "history": result.get("history", []), "layers": ctx.cfg.distill.layers,
               "teacher_layers": teacher_layers, "kept": kept_layers(ctx.cfg.distill.layers, teacher_layers),
               "teacher_score": teacher.get("best_score", 0.0)}
    (out / "distill.json").write_text(json.dumps(summary, indent=1))
    write_fields(out, {"summary": summary})
    shutil.rmtree(job["out_dir"], ignore_errors=True)   # done: its checkpoints are no longer needed for a resume


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Distilled) -> Distilled:
    client, summary = tracking.configure(), output.summary
    tracking.log_metrics(client, ctx.run_id, {f"distill/{k}": summary[k] for k in SUMMARY if k in summary})
    client.log_artifact(ctx.run_id, str(Path(output.path) / "distill.json"), "distill")
    return output
