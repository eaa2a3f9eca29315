"""Continued masked-LM pretraining stage (optional: `pretrain.enabled`): the base model, further trained on
unlabelled text kept clear of validation and test text (nerflow.pretrain). Its loss curve goes to the pipeline's
MLflow run as `pretrain/*` as checkpoints cover it; the texts removed, tokens seen and time at the end. The model
folder it writes is what `train` starts from."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from nerflow.outputs import Pretrained, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import RunContext


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    from nerflow.pretrain import pretrain_stage

    client, cfg = tracking.configure(), ctx.cfg
    work = Path(cfg.cache_dir) / "pretrain" / f"{step.key}.work"   # checkpoints live here, across attempts
    def on_metrics(step_: int, values: dict[str, float], ms: int) -> None:
        tracking.log_metrics(client, ctx.run_id, tracking.regrouped(values, "pretrain"), step_, ms)

    summary = pretrain_stage(ctx.plan.model_path, Path(upstream["validate"].path), cfg.pretrain, cfg.train, cfg.seed,
                             work, on_metrics)
    shutil.copytree(summary.pop("best_dir"), out / "model")
    (out / "pretrain.json").write_text(json.dumps(summary, indent=1))
    write_fields(out, {"summary": summary})
    shutil.rmtree(work, ignore_errors=True)   # done: its checkpoints are no longer needed for a resume


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Pretrained) -> Pretrained:
    summary = output.summary
    tracking.log_metrics(tracking.configure(), ctx.run_id, {
        f"pretrain/{k}": summary[k] for k in ("texts", "new_head_weights", "removed_exact", "removed_near", "steps",
                                             "tokens_seen", "train_seconds", "tokens_per_s", "best_epoch")
        if k in summary})
    return output
