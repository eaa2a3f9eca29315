"""Validation stage: read the corpus, run the Great Expectations suite, log the report, write canonical IOB2 splits."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from prefect import task

from nerflow import cache, data, validate
from nerflow.config import PipelineConfig
from nerflow.tasks import tracking
from nerflow.tasks.stage import run_stage

CODE = cache.code_fingerprint(["config", "data", "schemes", "validate"], ["great-expectations", "pandas"])
# Where the files are and what they are called does not change the result; their content does.
LOCATION_KEYS = {"dir", "train", "validation", "test"}


class DataValidationError(ValueError):
    """The suite failed: the message starts with file:line and the rule."""


def data_fingerprint(cfg: PipelineConfig) -> str:
    if cfg.data.format == "hf":
        return f"hf:{cfg.data.hf_dataset}"
    return data.hash_files(list(data.input_files(cfg.data).values()))


def check_corpus(cfg: PipelineConfig, client=None, run_id: str | None = None):
    """Read and validate; log the report (JSON + HTML) whether it passed or not; raise if it failed."""
    corpus = data.load_corpus(cfg.data)
    report = validate.validate_corpus(corpus, cfg.data)
    if client is not None:
        tracking.log_json(client, run_id, report.to_json(), "validation/report.json")
        client.log_text(run_id, validate.render_html(report), "validation/report.html")
        tracking.log_metrics(client, run_id, {f"data_{k}": v for k, v in report.metrics.items()})
    if not report.passed:
        raise DataValidationError(report.summary())
    return corpus, report


@task(name="validate")
def validate_task(cfg: PipelineConfig, run_id: str) -> dict:
    client = tracking.configure()
    fingerprint = data_fingerprint(cfg)
    parts = {"data": fingerprint, "code": CODE,
             "settings": {k: v for k, v in cfg.data.model_dump(mode="json").items() if k not in LOCATION_KEYS}}

    def compute(out: Path) -> None:
        corpus, report = check_corpus(cfg, client, run_id)
        canonical = {split: data.canonicalize(sentences, cfg.data) for split, sentences in corpus.items()}
        for split, sentences in canonical.items():
            data.write_split(sentences, out / f"{split}.jsonl")
        (out / "labels.json").write_text(json.dumps(data.label_list(canonical)))
        (out / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=str))

    result = run_stage(client, run_id, cfg.cache_dir, "validate", parts, compute)
    out = Path(result["path"])
    if result["reused"]:  # the stored report is still this run's evidence
        client.log_artifact(run_id, str(out / "report.json"), "validation")
    for split in data.SPLITS:
        tracking.log_dataset(client, run_id, out / f"{split}.jsonl", f"{split}-{fingerprint[:12]}", split)
    tracking.log_tags(client, run_id, {"data_hash": fingerprint})
    return {**result, "data_hash": fingerprint}
