"""NER's side of the training loop: token-classification head, window collation, token cross-entropy, validation
F1 (seqeval strict IOB2 over Viterbi-decoded tags), and the saved model with its window settings."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from nerflow.checkpoints import MetricsCallback
from nerflow.config import TrainConfig
from nerflow.ner.data import read_split
from nerflow.ner.evaluate import score
from nerflow.ner.predict import collate, predict_windows, write_meta
from nerflow.ner.tokenization import IGNORE, Window, load_windows
from nerflow.train import fit
from nerflow.trainable import Trainable, TrainResult, save_pretrained


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")


def trainable(model_path: str, tokenizer, labels: list[str], train_windows: list[Window],
              val_windows: list[Window], val_gold: list[list[str]], cfg: TrainConfig, meta: dict) -> Trainable:
    from transformers import AutoModelForTokenClassification

    pad_id = tokenizer.pad_token_id or 0

    def load_model():
        # fp32 master weights whatever the checkpoint was saved in (transformers 5 loads a bf16/fp16 checkpoint
        # as such by default); GPUs get bf16/fp16 through autocast
        return AutoModelForTokenClassification.from_pretrained(
            model_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={t: i for i, t in enumerate(labels)}, ignore_mismatched_sizes=True, dtype=torch.float32,
            revision=meta.get("base_model_revision"))

    def validate(model, device: str, autocast_dtype) -> dict[str, float]:
        tags, _ = predict_windows(model, val_windows, [len(g) for g in val_gold], dict(enumerate(labels)), pad_id,
                                  cfg.eval_batch_size, device, autocast_dtype, batch_tokens=cfg.eval_batch_tokens)
        scores = score(val_gold, tags)
        return {"f1": scores.f1, "precision": scores.precision, "recall": scores.recall}

    def save(model, target: Path) -> None:
        save_pretrained(model, tokenizer, target, lambda folder: write_meta(folder, **meta))

    return Trainable(load_model=load_model, examples=train_windows,
                     lengths=[len(w.input_ids) for w in train_windows],
                     targets=[sum(1 for t in w.labels if t != IGNORE) for w in train_windows],
                     collate=functools.partial(collate, pad_id=pad_id), loss_sum=token_loss_sum,
                     validate=validate, save=save, identity={"task": "token-classification", "labels": labels})


def train(model_path: str, tokenizer, labels: list[str], train_windows: list[Window], val_windows: list[Window],
          val_gold: list[list[str]], cfg: TrainConfig, seed: int, out_dir: Path, meta: dict,
          on_metrics: MetricsCallback | None = None) -> TrainResult:
    """Fine-tune a token classifier on windows (see `nerflow.train.fit`)."""
    job = trainable(model_path, tokenizer, labels, train_windows, val_windows, val_gold, cfg, meta)
    return fit(job, cfg, seed, out_dir, on_metrics)


def job_trainable(job: dict) -> tuple[Trainable, TrainConfig]:
    """A job of `nerflow.launch` as the loop's inputs: the validated splits, the windows and the settings, read
    from where the pipeline left them (the distill stage runs the same job as its student's, nerflow.distill)."""
    from transformers import AutoTokenizer

    cfg = TrainConfig.model_validate(job["train"])
    validated, windows = Path(job["validated"]), Path(job["tokenized"])
    labels = json.loads((validated / "labels.json").read_text())
    val_gold = [s.tags for s in read_split(validated / "validation.jsonl")]
    tokenizer = AutoTokenizer.from_pretrained(job["model_path"], revision=job["meta"].get("base_model_revision"))
    return trainable(job["model_path"], tokenizer, labels, load_windows(windows / "train"),
                     load_windows(windows / "validation"), val_gold, cfg, job["meta"]), cfg


def train_job(job: dict, on_metrics: MetricsCallback | None = None, should_stop=None) -> TrainResult:
    """A job of `nerflow.launch`: fine-tune as `job_trainable` reads it."""
    trained, cfg = job_trainable(job)
    return fit(trained, cfg, job["seed"], Path(job["out_dir"]), on_metrics, should_stop)


def job_fields(cfg) -> dict:
    """What a NER training job carries beyond the shared fields (prefect_tasks/train.py): the window settings the
    served model needs."""
    t = cfg.tokenize
    return {"meta": {"max_length": t.max_length, "stride": t.stride, "context": t.context,
                     "context_tokens": t.context_tokens}}
