"""Validation stage: read the corpus, run the Great Expectations suite, log the report, write canonical IOB2 splits."""
from __future__ import annotations

import json
from pathlib import Path

from nerflow import data, validate
from nerflow.config import PipelineConfig
from nerflow.plan import StagePlan
from nerflow.tasks import tracking
from nerflow.tasks.stage import run_stage, stage_task


@stage_task("validate")
def validate_task(cfg: PipelineConfig, step: StagePlan, run_id: str) -> dict:
    client = tracking.configure()
    fingerprint = step.parts["data"]

    def compute(out: Path) -> None:
        corpus = data.load_corpus(cfg.data)
        report = validate.validate_corpus(corpus, cfg.data)
        # the report is evidence whether the data passed or not
        tracking.log_json(client, run_id, report.to_json(), "validation/report.json")
        client.log_text(run_id, validate.render_html(report), "validation/report.html")
        tracking.log_metrics(client, run_id, {f"data_{k}": v for k, v in report.metrics.items()})
        if not report.passed:
            raise validate.ValidationFailed(report.summary())
        canonical = {split: data.canonicalize(sentences, cfg.data) for split, sentences in corpus.items()}
        for split, sentences in canonical.items():
            data.write_split(sentences, out / f"{split}.jsonl")
        (out / "labels.json").write_text(json.dumps(data.label_list(canonical)))
        (out / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=str))

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    out = Path(result["path"])
    if result["reused"]:  # the stored report is still this run's evidence
        client.log_artifact(run_id, str(out / "report.json"), "validation")
    for split in data.SPLITS:
        tracking.log_dataset(client, run_id, out / f"{split}.jsonl", f"{split}-{fingerprint[:12]}", split)
    tracking.log_tags(client, run_id, {"data_hash": fingerprint})
    return {**result, "data_hash": fingerprint}
