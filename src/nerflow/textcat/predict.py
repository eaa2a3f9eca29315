"""Segments -> per-text probabilities: the one code path that validation in training, evaluation and the served
model share. A text read as several windows gets the mean (or max) of its windows' logits, then softmax
(single-label) or a sigmoid per label (multi-label, each against its own threshold)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerflow.batching import (
    PREDICT_MAX_SEQUENCES,
    inference_batches,
    pad_multiple,
    padded,
    predict_batch_tokens,
)
from nerflow.runtimes import load_model
from nerflow.textcat.config import TextcatTokenizeConfig as TokenizeConfig
from nerflow.textcat.tokenization import Encoder, Segment

META_FILE = "nerflow.json"   # next to the weights: what the predictor needs besides them


def collate(segments: list[Segment], pad_id: int, n_labels: int | None = None, multi_label: bool = False,
            with_labels: bool = True, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Padded to the batch's longest segment (rounded up to `multiple`: 8 on GPUs, nerflow.batching.pad_multiple).
    Labels: class ids (single-label) or multi-hot rows (multi-label)."""
    width = padded(max(len(s.input_ids) for s in segments), multiple)
    ids = torch.full((len(segments), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(segments), width), dtype=torch.long)
    for i, s in enumerate(segments):
        ids[i, :len(s.input_ids)] = torch.tensor(s.input_ids)
        mask[i, :len(s.input_ids)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if with_labels:
        if multi_label:
            target = torch.zeros((len(segments), n_labels))
            for i, s in enumerate(segments):
                target[i, s.labels] = 1.0
            batch["labels"] = target
        else:
            batch["labels"] = torch.tensor([s.labels[0] for s in segments], dtype=torch.long)
    return batch


def pool_rows(logits: torch.Tensor, owner: torch.Tensor, n: int, how: str) -> torch.Tensor:
    """Per text, the mean or max over the rows (windows) it owns: [rows, labels] -> [n, labels]."""
    index = owner.unsqueeze(1).expand_as(logits)
    if how == "max":
        out = torch.full((n, logits.shape[1]), float("-inf"), dtype=logits.dtype, device=logits.device)
        return out.scatter_reduce(0, index, logits, reduce="amax", include_self=True)
    out = torch.zeros((n, logits.shape[1]), dtype=logits.dtype, device=logits.device)
    return out.scatter_reduce(0, index, logits, reduce="mean", include_self=False)


def to_probabilities(logits: np.ndarray | torch.Tensor, multi_label: bool) -> np.ndarray:
    logits = torch.as_tensor(logits, dtype=torch.float32)
    return (logits.sigmoid() if multi_label else logits.softmax(-1)).numpy()


@torch.inference_mode()
def predict_logits(model, segments: list[Segment], n_texts: int, pool: str, pad_id: int, batch_size: int = 256,
                   device: str = "cpu", autocast_dtype=None, batch_tokens: int | None = None) -> np.ndarray:
    """Pooled logits per text, [texts, labels]."""
    was_training = model.training
    model.eval()
    rows = torch.zeros((len(segments), model.config.num_labels))
    for chunk in inference_batches([len(s.input_ids) for s in segments], batch_tokens, batch_size):
        batch = collate([segments[i] for i in chunk], pad_id, with_labels=False, multiple=pad_multiple(device))
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype, enabled=autocast_dtype is not None):
            rows[chunk] = model(**batch).logits.float().cpu()
    model.train(was_training)
    if not segments:
        return np.zeros((n_texts, model.config.num_labels), dtype=np.float32)
    return pool_rows(rows, torch.tensor([s.doc for s in segments]), n_texts, pool).numpy()


def tokenize_settings(meta: dict) -> TokenizeConfig:
    return TokenizeConfig(max_length=meta["max_length"], stride=meta["stride"], long_documents=meta["long_documents"],
                          head_share=meta["head_share"], pool=meta["pool"])


def write_meta(model_dir: Path, **meta) -> None:
    (model_dir / META_FILE).write_text(json.dumps({"task": "text-classification", **meta}, indent=2))


@dataclass
class Classifier:
    """A fine-tuned classifier plus what it needs to answer raw texts: labels, thresholds, long-text settings."""

    model: object
    tokenizer: object
    meta: dict
    device: str = "cpu"

    @classmethod
    def load(cls, model_dir: Path | str, device: str | None = None, runtime: str | None = None, model=None
             ) -> Classifier:
        """The folder's classifier, running the runtime it is served with (nerflow.runtimes), `runtime` ("torch" |
        "onnx") when forced, or `model` when given."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model_dir = Path(model_dir)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = model if model is not None else load_model(model_dir, AutoModelForSequenceClassification, device,
                                                            runtime)
        return cls(model, AutoTokenizer.from_pretrained(model_dir), json.loads((model_dir / META_FILE).read_text()),
                   device)

    @property
    def labels(self) -> list[str]:
        return self.meta["labels"]

    @property
    def multi_label(self) -> bool:
        return bool(self.meta["multi_label"])

    def predict_examples(self, examples: list[dict]) -> list[list[str]]:
        """The served-scorer protocol (nerflow.scoring.Scorer): the predicted labels of each example's `text`, the
        same decision as `predict_text` (argmax, or every label at or above its threshold)."""
        answers = self.predict_text([e["text"] for e in examples]) if examples else []
        return [list(a["labels"]) if self.multi_label else [a["label"]] for a in answers]

    def probabilities(self, texts: list[str]) -> np.ndarray:
        encoder = Encoder(self.tokenizer, tokenize_settings(self.meta))
        segments = [s for i, ids in enumerate(encoder.token_ids(texts)) for s in encoder.encode(i, ids, [])]
        logits = predict_logits(self.model, segments, len(texts), self.meta["pool"], self.tokenizer.pad_token_id or 0,
                                PREDICT_MAX_SEQUENCES, self.device, batch_tokens=predict_batch_tokens(self.device))
        return to_probabilities(logits, self.meta["multi_label"])

    def predict_text(self, texts: list[str]) -> list[dict]:
        """Per text `{"label", "score", "scores": {label: p}}`; multi-label `{"labels", "scores"}` (every label
        at or above its threshold, chosen on validation)."""
        probs = self.probabilities(texts)
        out = []
        for row in probs:
            scores = {label: round(float(p), 6) for label, p in zip(self.labels, row)}
            if self.meta["multi_label"]:
                thresholds = self.meta.get("thresholds") or [0.5] * len(self.labels)
                out.append({"labels": [label for label, p, t in zip(self.labels, row, thresholds) if p >= t],
                            "scores": scores})
            else:
                best = int(row.argmax())
                out.append({"label": self.labels[best], "score": round(float(row[best]), 6), "scores": scores})
        return out


def load_predictor(folder: Path, runtime: str | None = None):
    """texts -> {"label", "score", "scores"}, from a model folder nerflow trained (`nerflow predict FOLDER`), on the
    runtime it is served with or `runtime` (torch | onnx)."""
    return Classifier.load(folder, runtime=runtime).predict_text
