"""Evaluation stage: the best weights on validation and test, scored by the task (NER: seqeval strict IOB2; text
classification: accuracy, macro/micro F1, calibration), with its reports and plots as artifacts."""
from __future__ import annotations

import json
from pathlib import Path

from nerflow import cache
from nerflow import task_types
from nerflow.config import PipelineConfig
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import run_stage, stage_task


@stage_task("evaluate")
def evaluate_task(cfg: PipelineConfig, step: StagePlan, validated: dict, tokenized: dict, trained: dict,
                  run_id: str) -> dict:
    client = tracking.configure()
    kind = task_types.get(cfg.task)

    def compute(out: Path) -> None:
        kind.evaluate(Path(trained["model_dir"]), Path(validated["path"]), Path(tokenized["path"]), cfg, out)

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    out = Path(result["path"])
    metrics = json.loads((out / "metrics.json").read_text())
    tracking.log_metrics(client, run_id, metrics)
    for f in sorted(out.iterdir()):
        if f.name != cache.MANIFEST:
            client.log_artifact(run_id, str(f), "evaluation")
    return {**result, "metrics": metrics}
