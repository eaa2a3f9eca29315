"""Text classification's side of the training loop: a sequence-classification head, segment collation, cross-entropy
(single-label) or binary cross-entropy per label (multi-label, positives optionally weighted), validation scores, and
the saved model with what its predictor needs (labels, long-text settings, multi-label thresholds chosen on
validation).

Long texts read as windows train one of two ways (`tokenize.window_training`): `each` window is an example with
its text's label (cheap, the windows of one text land in different batches), or the windows of a text are `pooled`
in training too (a batch holds whole texts; their windows' logits are pooled, as in prediction, and the loss is
the text's). docs/benchmarks.md compares them on movie reviews.

Multi-label epochs are chosen by macro average precision, and each is scored with thresholds tuned on validation
too (nerflow.textcat.selection); the kept weights are saved with the thresholds tuned on that epoch's validation
probabilities, so the served decision is the one validation measured (`val/f1_tuned` of the best epoch).
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from nerflow.checkpoints import MetricsCallback
from nerflow.textcat import evaluate, selection
from nerflow.textcat.config import TextcatTokenizeConfig as TokenizeConfig
from nerflow.textcat.config import TextcatTrainConfig as TrainConfig
from nerflow.textcat.data import read_split
from nerflow.textcat.predict import collate, pool_rows, predict_logits, to_probabilities, write_meta
from nerflow.textcat.tokenization import Segment, load_segments
from nerflow.train import fit
from nerflow.trainable import Trainable, TrainResult, save_pretrained

log = logging.getLogger(__name__)


def loss_sum(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool,
             pos_weight: list[float] | None = None) -> torch.Tensor:
    """Summed over texts: the loop divides by the texts in the global batch. `pos_weight` (multi-label): each
    label's positive terms weighted (train.pos_weight, nerflow.textcat.selection.positive_weights)."""
    if multi_label:
        weight = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight, reduction="none").mean(-1).sum()
    return F.cross_entropy(logits, labels, reduction="sum")


def collate_texts(texts: list[list[Segment]], pad_id: int, n_labels: int, multi_label: bool, multiple: int = 1
                  ) -> dict:
    """A batch of whole texts: all their windows, which text owns each window, and one label row per text."""
    flat = [s for windows in texts for s in windows]
    batch = collate(flat, pad_id, with_labels=False, multiple=multiple)
    batch["owner"] = torch.tensor([i for i, windows in enumerate(texts) for _ in windows])
    labels = collate([windows[0] for windows in texts], pad_id, n_labels, multi_label)["labels"]
    return {**batch, "labels": labels}


def pooled_forward(model, batch: dict, pool: str) -> torch.Tensor:
    owner = batch.pop("owner")
    logits = model(**batch).logits
    return pool_rows(logits.float(), owner, int(owner.max()) + 1, pool)


def trainable(model_path: str, tokenizer, labels: list[str], train_segments: list[Segment],
              val_segments: list[Segment], val_gold: list[list[str]], multi_label: bool, cfg: TrainConfig,
              tokenize: TokenizeConfig, meta: dict) -> Trainable:
    from transformers import AutoModelForSequenceClassification

    pad_id = tokenizer.pad_token_id or 0

    def load_model():
        # fp32 master weights whatever the checkpoint was saved in (see nerflow.ner.training)
        return AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={t: i for i, t in enumerate(labels)}, ignore_mismatched_sizes=True, dtype=torch.float32,
            revision=meta.get("base_model_revision"),
            problem_type="multi_label_classification" if multi_label else "single_label_classification")

    tuned: dict = {}   # multi-label: the thresholds of the latest validation, saved with the weights if kept

    def validate(model, device: str, autocast_dtype) -> dict[str, float]:
        logits = predict_logits(model, val_segments, len(val_gold), tokenize.pool, pad_id, cfg.eval_batch_size,
                                device, autocast_dtype, cfg.eval_batch_tokens)
        probs = to_probabilities(logits, multi_label)
        scores = evaluate.score(val_gold, probs, labels, multi_label)
        out = {"f1": scores.macro_f1, "accuracy": scores.accuracy, "f1_micro": scores.micro_f1}
        if multi_label:
            more, tuned["thresholds"] = selection.multi_label_scores(val_gold, probs, labels)
            out |= more
        return out

    def save(model, target: Path) -> None:
        # the loop saves right after the validation that made this epoch the best (same process: rank 0)
        extra = {"thresholds": [float(t) for t in tuned["thresholds"]]} if multi_label else {}
        save_pretrained(model, tokenizer, target, lambda folder: write_meta(folder, **meta, **extra))

    pooled = tokenize.long_documents == "windows" and tokenize.window_training == "pooled"
    if pooled:   # examples are whole texts: lists of their windows
        by_text: dict[int, list[Segment]] = {}
        for s in train_segments:
            by_text.setdefault(s.doc, []).append(s)
        examples: list = list(by_text.values())
        lengths = [sum(len(s.input_ids) for s in windows) for windows in examples]
        collate_fn = functools.partial(collate_texts, pad_id=pad_id, n_labels=len(labels), multi_label=multi_label)
    else:
        examples, lengths = train_segments, [len(s.input_ids) for s in train_segments]
        collate_fn = functools.partial(collate, pad_id=pad_id, n_labels=len(labels), multi_label=multi_label)
    pos_weight = None
    if multi_label:
        example_labels = [windows[0].labels for windows in examples] if pooled else [s.labels for s in examples]
        pos_weight = selection.positive_weights(example_labels, len(labels), cfg.pos_weight)
        if pos_weight is not None:
            log.info("positive weights (train.pos_weight=%s): %s", cfg.pos_weight,
                     ", ".join(f"{label} {w:.2f}" for label, w in zip(labels, pos_weight)))
    return Trainable(load_model=load_model, examples=examples, lengths=lengths, targets=[1] * len(examples),
                     collate=collate_fn,
                     loss_sum=functools.partial(loss_sum, multi_label=multi_label, pos_weight=pos_weight),
                     validate=validate, save=save, score=selection.SELECTS if multi_label else "f1",
                     identity={"task": "text-classification", "labels": labels, "multi_label": multi_label,
                               "window_training": "pooled" if pooled else "each",
                               **({"pos_weight": pos_weight} if pos_weight is not None else {})},
                     forward=functools.partial(pooled_forward, pool=tokenize.pool) if pooled else None)


def train(model_path: str, tokenizer, labels: list[str], train_segments: list[Segment], val_segments: list[Segment],
          val_gold: list[list[str]], multi_label: bool, cfg: TrainConfig, tokenize: TokenizeConfig, seed: int,
          out_dir: Path, meta: dict, on_metrics: MetricsCallback | None = None, should_stop=None) -> TrainResult:
    """Fine-tune a text classifier (see `nerflow.train.fit`); a multi-label model is saved with the per-label
    thresholds chosen on validation for its weights."""
    job = trainable(model_path, tokenizer, labels, train_segments, val_segments, val_gold, multi_label, cfg,
                    tokenize, meta)
    return fit(job, cfg, seed, out_dir, on_metrics, should_stop)


def job_trainable(job: dict) -> tuple[Trainable, TrainConfig]:
    """A job of `nerflow.launch` as the loop's inputs: the validated splits, the segments and the settings, read
    from where the pipeline left them (the distill stage runs the same job as its student's, nerflow.distill)."""
    from transformers import AutoTokenizer

    cfg, tokenize = TrainConfig.model_validate(job["train"]), TokenizeConfig.model_validate(job["tokenize"])
    validated, segments = Path(job["validated"]), Path(job["tokenized"])
    labels = json.loads((validated / "labels.json").read_text())
    val_gold = [d.labels for d in read_split(validated / "validation.jsonl")]
    tokenizer = AutoTokenizer.from_pretrained(job["model_path"], revision=job["meta"].get("base_model_revision"))
    return trainable(job["model_path"], tokenizer, labels, load_segments(segments / "train"),
                     load_segments(segments / "validation"), val_gold, job["multi_label"], cfg, tokenize,
                     job["meta"]), cfg


def train_job(job: dict, on_metrics: MetricsCallback | None = None, should_stop=None) -> TrainResult:
    """A job of `nerflow.launch`: fine-tune as `job_trainable` reads it; a multi-label model is saved with the
    per-label thresholds chosen on validation for its weights."""
    trained, cfg = job_trainable(job)
    return fit(trained, cfg, job["seed"], Path(job["out_dir"]), on_metrics, should_stop)


def job_fields(cfg) -> dict:
    """What a text-classification training job carries beyond the shared fields (prefect_tasks/train.py): how
    texts become segments, and what the served model needs to read them the same way."""
    t = cfg.tokenize
    return {"tokenize": t.model_dump(mode="json"), "multi_label": cfg.data.multi_label,
            "meta": {"max_length": t.max_length, "stride": t.stride, "long_documents": t.long_documents,
                     "head_share": t.head_share, "pool": t.pool, "multi_label": cfg.data.multi_label}}
