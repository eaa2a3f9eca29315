"""Reference stage (optional: `monitor.reference`, on in the shipped configs): the validation split profiled by the
model as it will be served (nerflow.drift_profile: its encoder's pooled embeddings, input descriptors, the served
runtime's predictions), split by document into `reference` and `holdout`, and the training split's input descriptors
(`training`). Logged on the run under `monitor/reference/`, where `nerflow drift` finds a version's reference
(tasks/monitoring.py)."""
from __future__ import annotations

from pathlib import Path

from nerflow import drift_profile, task_types
from nerflow.outputs import Referenced, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import monitoring, served_model, tracking
from nerflow.prefect_tasks.stage import RunContext

PROFILES = "profiles"


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    entry, kind = task_types.entry(ctx.cfg.task, "reference"), task_types.get(ctx.cfg.task)
    exported = upstream.get("export")
    folder = Path(exported.served_dir if exported is not None else upstream["train"].model_dir)
    with served_model.quiet_loading():
        predict = entry.load_predictor(folder)
        validated = Path(upstream["validate"].path)
        about = drift_profile.write_reference(entry.split_texts(validated, "validation"), ctx.cfg.monitor,
                                              ctx.cfg.seed, folder, predict, kind, out / PROFILES,
                                              training=entry.split_texts(validated, "train"))
    write_fields(out, {"texts": about["texts"], "holdout": about["holdout_texts"], "documents": about["documents"],
                       "bandwidth": about["bandwidth"], "training": about["training_texts"]})


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Referenced) -> Referenced:
    client = tracking.configure()
    client.log_artifacts(ctx.run_id, str(Path(output.path) / PROFILES), monitoring.REFERENCE_DIR)
    return output
