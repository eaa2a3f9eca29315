"""Evaluation stage: the best weights on validation and test, scored with seqeval (strict IOB2), with reports,
a per-type confusion plot and the test predictions in CoNLL format next to the gold tags."""
from __future__ import annotations

import json
from pathlib import Path

from nerflow import cache, data, evaluate, predict, tokenization
from nerflow.config import PipelineConfig
from nerflow.plan import StagePlan
from nerflow.tasks import tracking
from nerflow.tasks.stage import run_stage, stage_task

EVAL_SPLITS = ("validation", "test")
# metric names per split (docs/metrics.md): `val/f1` etc. are the per-epoch history the training loop logs, so the
# registered (best) weights' validation scores are `val/best_*`; per type only F1 there, the full set on test
METRIC_NAMES = {"validation": ("val/best_", ("f1",)), "test": ("test/", ("f1", "precision", "recall", "support"))}


def score_split(model, tokenizer, labels, sentences, windows_dir: Path, batch_size: int, batch_tokens: int, out: Path,
                split: str) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tags, _ = predict.predict_windows(model.to(device), tokenization.load_windows(windows_dir),
                                      [len(s.tokens) for s in sentences], dict(enumerate(labels)),
                                      tokenizer.pad_token_id or 0, batch_size, device, batch_tokens=batch_tokens)
    gold = [s.tags for s in sentences]
    scores = evaluate.score(gold, tags)
    (out / f"{split}_report.txt").write_text(scores.report_text)
    (out / f"{split}_report.json").write_text(json.dumps(scores.report, indent=1))
    evaluate.write_predictions_conll(sentences, tags, out / f"{split}_predictions.conll")
    evaluate.plot_type_confusion(*evaluate.type_confusion(gold, tags), out / f"{split}_confusion.png")
    prefix, per_type = METRIC_NAMES[split]
    return scores.metrics(prefix, per_type)


@stage_task("evaluate")
def evaluate_task(cfg: PipelineConfig, step: StagePlan, validated: dict, tokenized: dict, trained: dict,
                  run_id: str) -> dict:
    client = tracking.configure()

    def compute(out: Path) -> None:
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        model = AutoModelForTokenClassification.from_pretrained(trained["model_dir"])
        tokenizer = AutoTokenizer.from_pretrained(trained["model_dir"])
        labels = json.loads((Path(validated["path"]) / "labels.json").read_text())
        metrics: dict[str, float] = {}
        for split in EVAL_SPLITS:
            sentences = data.read_split(Path(validated["path"]) / f"{split}.jsonl")
            metrics |= score_split(model, tokenizer, labels, sentences, Path(tokenized["path"]) / split,
                                   cfg.evaluate.batch_size, cfg.evaluate.batch_tokens, out, split)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    out = Path(result["path"])
    metrics = json.loads((out / "metrics.json").read_text())
    tracking.log_metrics(client, run_id, metrics)
    for f in sorted(out.iterdir()):
        if f.name != cache.MANIFEST:
            client.log_artifact(run_id, str(f), "evaluation")
    return {**result, "metrics": metrics}
