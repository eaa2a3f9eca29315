"""Export stage (optional: `export.enabled`, on in the shipped configs): the fine-tuned model as ONNX fp32 and
dynamic int8, each scored on validation and test with the evaluate stage's code and timed; the runtime that will
serve the registered version chosen on validation F1 (nerflow.export). Its rows go to MLflow as `export/*` metrics,
`export/export.json` and `export/export.md`; the choice as the run's tags `export.runtime` and `export.reason`; the
served folder (the weights, `runtime.json`, the chosen ONNX file) is what `register` logs."""
from __future__ import annotations

from pathlib import Path

from nerflow import export, task_types
from nerflow.outputs import Exported, runtime_table, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.stage import RunContext


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    entry = task_types.entry(ctx.cfg.task, "export")
    student = Path(upstream["distill"].model_dir) if "distill" in upstream else None   # distill.enabled
    summary = entry.export_model(Path(upstream["train"].model_dir), Path(upstream["validate"].path),
                                 Path(upstream["tokenize"].path), ctx.cfg, out, student)
    (out / "export.md").write_text("\n".join([*runtime_table(summary["runtime"], summary["unit"], summary["rows"]),
                                              "", f"served: {summary['runtime']}: {summary['reason']}", ""]))
    write_fields(out, {k: summary[k] for k in ("runtime", "reason", "unit", "max_f1_drop", "rows")})


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Exported) -> Exported:
    client = tracking.configure()
    summary = {"runtime": output.runtime, "unit": output.unit, "rows": output.rows}
    tracking.log_metrics(client, ctx.run_id, export.metrics(summary))
    tracking.log_tags(client, ctx.run_id, {"export.runtime": output.runtime, "export.reason": output.reason[:4900]})
    for name in (export.EXPORT_FILE, "export.md"):
        client.log_artifact(ctx.run_id, str(Path(output.path) / name), "export")
    return output

