"""Evaluation stage: the best weights on validation and test, scored by the task (NER: seqeval strict IOB2; text
classification: accuracy, macro/micro F1, calibration), with its reports and plots as artifacts."""
from __future__ import annotations

from pathlib import Path

from nerflow import cache, task_types
from nerflow.outputs import OUTPUT_FILE, Evaluated, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import RunContext


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    entry = task_types.entry(ctx.cfg.task, "evaluate")
    metrics = entry.evaluate_model(Path(upstream["train"].model_dir), Path(upstream["validate"].path),
                                   Path(upstream["tokenize"].path), ctx.cfg.evaluate, out)
    write_fields(out, {"metrics": metrics})


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Evaluated) -> Evaluated:
    client = tracking.configure()
    tracking.log_metrics(client, ctx.run_id, output.metrics)
    for f in sorted(Path(output.path).iterdir()):
        if f.name not in (cache.MANIFEST, OUTPUT_FILE):
            client.log_artifact(ctx.run_id, str(f), "evaluation")
    return output
