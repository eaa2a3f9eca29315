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
        tracking.log_metrics(client, run_id, data_metrics(report.metrics))
        if not report.passed:
            raise validate.ValidationFailed(report.summary())
        canonical = {split: data.canonicalize(sentences, cfg.data) for split, sentences in corpus.items()}
        for split, sentences in canonical.items():
            data.write_split(sentences, out / f"{split}.jsonl")
        (out / "labels.json").write_text(json.dumps(data.label_list(canonical)))
        (out / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=str))

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    out = Path(result["path"])
    if result["reused"]:  # the stored report is still this run's evidence, and its numbers this run's data/ metrics
        client.log_artifact(run_id, str(out / "report.json"), "validation")
        stored = json.loads((out / "report.json").read_text())
        tracking.log_metrics(client, run_id, data_metrics(stored["metrics"]))
    for split in data.SPLITS:
        tracking.log_dataset(client, run_id, out / f"{split}.jsonl", f"{split}-{fingerprint[:12]}", split)
    tracking.log_tags(client, run_id, {"data_hash": fingerprint})
    return {**result, "data_hash": fingerprint}


def data_metrics(report_metrics: dict[str, float]) -> dict[str, float]:
    """The validation report's numbers as `data/` metrics (docs/metrics.md): sizes per split, the share of test
    sentences seen in train, I-X tags that open an entity (repaired or failed), one failure total. The per-rule failure counts (nearly always
    zero: a dozen flat charts) stay in the report artifact, `validation/report.json`."""
    out: dict[str, float] = {}
    for key, value in report_metrics.items():
        for old, new in (("n_sentences_", "sentences_"), ("n_tokens_", "tokens_")):
            if key.startswith(old):
                out[f"data/{new}{key.removeprefix(old)}"] = value
    out["data/test_in_train_share"] = report_metrics.get("test_in_train_share", 0.0)
    out["data/invalid_iob2_tags"] = report_metrics.get("invalid_iob2_count", 0.0)
    out["data/failures"] = sum(v for k, v in report_metrics.items() if k.startswith("failures_"))
    return out
