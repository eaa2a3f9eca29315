"""Validation stage: read the corpus, run the task's Great Expectations suite, log the report, write canonical
splits (and the label set) for the stages after it."""
from __future__ import annotations

import json
from pathlib import Path

from nerflow import data_identity, task_types
from nerflow.data import SPLITS
from nerflow.outputs import Validated, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import datasets, tracking
from nerflow.prefect_tasks.stage import RunContext
from nerflow.validation import ValidationFailed, render_html


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    cfg, client = ctx.cfg, tracking.configure()
    entry = task_types.entry(cfg.task, "validate")
    # exactly the bytes the key holds: a file replaced since the plan stops the run (DataError naming it)
    corpus = data_identity.load_checked(cfg.data, ctx.plan.identities["data"], entry.load_corpus)
    report = entry.validate_corpus(corpus, cfg.data)
    # the report is evidence whether the data passed or not
    tracking.log_json(client, ctx.run_id, report.to_json(), "validation/report.json")
    client.log_text(ctx.run_id, render_html(report), "validation/report.html")
    tracking.log_metrics(client, ctx.run_id, data_metrics(report.metrics))
    if not report.passed:
        raise ValidationFailed(report.summary())
    corpus = entry.sample_train(corpus, cfg.data)   # a learning curve's point: a share of train (nerflow.subsets)
    entry.write_validated(corpus, cfg.data, out)
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=str))
    write_fields(out, {"data_hash": ctx.plan.data_hash, "data": ctx.plan.identities["data"],
                       "sizes": {split: len(corpus[split]) for split in SPLITS}})


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Validated) -> Validated:
    client, out = tracking.configure(), Path(output.path)
    if output.reused:  # the stored report is still this run's evidence, and its numbers this run's data/ metrics
        client.log_artifact(ctx.run_id, str(out / "report.json"), "validation")
        stored = json.loads((out / "report.json").read_text())
        tracking.log_metrics(client, ctx.run_id, data_metrics(stored["metrics"]))
    for split in SPLITS:
        datasets.log_dataset(client, ctx.run_id, out / f"{split}.jsonl", f"{split}-{output.data_hash[:12]}", split)
    tracking.log_tags(client, ctx.run_id, {"data_hash": output.data_hash})
    return output


RENAMED = (("n_sentences_", "sentences_"), ("n_tokens_", "tokens_"), ("n_documents_", "texts_"),
           ("class_count_train_", "class_count_train_"))
COPIED = {"test_in_train_share": "test_in_train_share", "validation_in_train_share": "validation_in_train_share",
          "invalid_iob2_count": "invalid_iob2_tags", "min_class_share_train": "min_class_share_train",
          "duplicates_train": "duplicates_train"}


def data_metrics(report_metrics: dict[str, float]) -> dict[str, float]:
    """The validation report's numbers as `data/` metrics (docs/metrics.md): sizes per split, class counts (text
    classification), the share of test examples seen in train, I-X tags that open an entity (NER), one failure
    total. The per-rule failure counts (nearly always zero: a dozen flat charts) stay in the report artifact,
    `validation/report.json`."""
    out: dict[str, float] = {}
    for key, value in report_metrics.items():
        for old, new in RENAMED:
            if key.startswith(old):
                out[f"data/{new}{key.removeprefix(old)}"] = value
        if key in COPIED:
            out[f"data/{COPIED[key]}"] = value
    out.setdefault("data/test_in_train_share", 0.0)
    out["data/failures"] = sum(v for k, v in report_metrics.items() if k.startswith("failures_"))
    return out
