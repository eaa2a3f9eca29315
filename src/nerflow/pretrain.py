"""Continued masked-language-model pretraining (domain- or task-adaptive, Gururangan et al. 2020) through the
training loop of `nerflow.train.fit`: the same batching, optimizer, checkpoints, mid-epoch resume and stop handling.

The texts are lines (one paragraph or document each), cut into pieces of `max_length` sub-tokens. Every
`heldout_every`-th line is held out: its masked-token loss scores each epoch (the best epoch's weights are kept).
Masking follows transformers' DataCollatorForLanguageModeling (each non-special sub-token is chosen with
`mlm_probability`; of those 80% become [MASK], 10% a random token, 10% stay), drawn from a generator seeded by
(seed, epoch, example) alone: a resumed epoch masks exactly as the uninterrupted one did.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nerflow.batching import padded
from nerflow.checkpoints import MetricsCallback
from nerflow.config import TrainConfig
from nerflow.config_pretrain import PretrainConfig, text_files
from nerflow.decontaminate import decontaminate
from nerflow.train import fit
from nerflow.trainable import Trainable, TrainResult, save_pretrained

IGNORE = -100
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    index: int              # the example's place among its split's examples: with (seed, epoch) it seeds the mask
    input_ids: list[int]    # [CLS] ... [SEP]


def read_texts(paths: Sequence[str | Path], key: str = "pretrain.text") -> list[str]:
    """The non-blank lines of the files, and of every file under the folders (sorted), in order."""
    files = text_files(paths, key)
    texts: list[str] = []
    for f in files:
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ValueError(f"config key {key!r}: {f}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        texts += [line.strip() for line in lines if line.strip()]
    return texts


def cut(tokenizer, texts: Sequence[str], max_length: int) -> list[Piece]:
    """Each text as consecutive pieces of at most `max_length` sub-tokens, special tokens included."""
    if max_length < 3:
        raise ValueError(f"config key 'pretrain.max_length': {max_length} leaves no room for text")
    body = max_length - 2
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    pieces: list[Piece] = []
    for tokens in ids:
        for start in range(0, len(tokens), body):
            pieces.append(Piece(len(pieces), [tokenizer.cls_token_id, *tokens[start:start + body],
                                              tokenizer.sep_token_id]))
    return pieces


def mask_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    # a fixed mix of the three numbers (Python's hash of a tuple is not part of any contract)
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_000_007 + index) % (2 ** 63))


def mask(ids: list[int], generator: torch.Generator, p: float, mask_id: int, vocab_size: int
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) for one piece: DataCollatorForLanguageModeling's 80/10/10 rule; the first and last ids (the
    special tokens) are never chosen; labels are IGNORE where nothing is predicted."""
    inputs = torch.tensor(ids)
    chosen = torch.rand(len(ids), generator=generator) < p
    chosen[0] = chosen[-1] = False
    labels = torch.where(chosen, inputs, torch.full_like(inputs, IGNORE))
    replaced = chosen & (torch.rand(len(ids), generator=generator) < 0.8)
    randomized = chosen & ~replaced & (torch.rand(len(ids), generator=generator) < 0.5)
    inputs[replaced] = mask_id
    inputs[randomized] = torch.randint(vocab_size, (len(ids),), generator=generator)[randomized]
    return inputs, labels


class Masker:
    """Collates pieces with the masks of the epoch `fit` announced (Trainable.start_epoch)."""

    def __init__(self, seed: int, p: float, mask_id: int, pad_id: int, vocab_size: int):
        self.seed, self.p, self.mask_id, self.pad_id, self.vocab_size = seed, p, mask_id, pad_id, vocab_size
        self.epoch = 1

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def collate(self, pieces: list[Piece], multiple: int = 1, epoch: int | None = None) -> dict[str, torch.Tensor]:
        width = padded(max(len(p.input_ids) for p in pieces), multiple)
        ids = torch.full((len(pieces), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(pieces), width), dtype=torch.long)
        labels = torch.full((len(pieces), width), IGNORE, dtype=torch.long)
        for row, piece in enumerate(pieces):
            n = len(piece.input_ids)
            generator = mask_generator(self.seed, self.epoch if epoch is None else epoch, piece.index)
            ids[row, :n], labels[row, :n] = mask(piece.input_ids, generator, self.p, self.mask_id, self.vocab_size)
            attention[row, :n] = 1
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def masked_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")


def split_heldout(texts: Sequence[str], every: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): every `every`-th text held out, at least one, never all."""
    if len(texts) < 2:
        raise ValueError(f"pretraining needs at least 2 texts (one is held out to score epochs), got {len(texts)}")
    held_at = {i for i in range(len(texts)) if i % every == every - 1} or {len(texts) - 1}
    held = [t for i, t in enumerate(texts) if i in held_at]
    train = [t for i, t in enumerate(texts) if i not in held_at]
    return train, held


def mlm_trainable(model_path: str, tokenizer, texts: Sequence[str], settings: PretrainConfig, cfg: TrainConfig,
                  seed: int) -> Trainable:
    from transformers import AutoModelForMaskedLM

    train_texts, heldout_texts = split_heldout(texts, settings.heldout_every)
    pieces, heldout = cut(tokenizer, train_texts, settings.max_length), cut(tokenizer, heldout_texts,
                                                                            settings.max_length)
    masker = Masker(seed, settings.mlm_probability, tokenizer.mask_token_id, tokenizer.pad_token_id or 0,
                    len(tokenizer))

    def load_model():
        return AutoModelForMaskedLM.from_pretrained(model_path, dtype=torch.float32)

    @torch.inference_mode()
    def validate(model, device: str, autocast_dtype) -> dict[str, float]:
        model.eval()
        total, count = 0.0, 0
        for start in range(0, len(heldout), cfg.eval_batch_size):
            # epoch 0: the same masks every epoch, so epochs compare
            batch = masker.collate(heldout[start:start + cfg.eval_batch_size], epoch=0)
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                logits = model(**batch).logits
            total += float(masked_loss_sum(logits.float(), labels))
            count += int((labels != IGNORE).sum())
        model.train()
        loss = total / max(count, 1)
        # the score must grow as the model gets better and start above fit's -1: the geometric mean probability
        # of the masked sub-tokens (1 / perplexity)
        return {"masked_token_prob": math.exp(-loss), "loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    def save(model, target: Path) -> None:
        save_pretrained(model, tokenizer, target, lambda folder: None)

    # the loss is divided by the expected count of chosen sub-tokens (fit divides by the batch's `targets`): the
    # logged loss is then, on average, the cross-entropy per masked sub-token, and a step's scale does not swing
    # with how many tokens the draw happened to choose
    scale = 1.0 / settings.mlm_probability
    return Trainable(load_model=load_model, examples=pieces, lengths=[len(p.input_ids) for p in pieces],
                     targets=[max(len(p.input_ids) - 2, 1) for p in pieces], collate=masker.collate,
                     loss_sum=lambda logits, labels: masked_loss_sum(logits, labels) * scale, validate=validate,
                     save=save, score="masked_token_prob", start_epoch=masker.start_epoch,
                     identity={"task": "masked-lm", "mlm_probability": settings.mlm_probability,
                               "max_length": settings.max_length, "texts": len(texts)})


def loop_settings(settings: PretrainConfig, train: TrainConfig) -> TrainConfig:
    """The loop's settings for pretraining: the pretrain section's run length, rate and batches; the train
    section's device, precision, threads and reporting; nothing frozen; no early stop (every epoch runs)."""
    return train.model_copy(update={
        "epochs": settings.epochs, "lr": settings.lr,
        "batch_tokens": None if settings.batch_size else settings.batch_tokens,
        "batch_size": settings.batch_size, "min_steps": settings.min_steps, "warmup_ratio": settings.warmup_ratio,
        "freeze": "none", "early_stopping_patience": 0, "devices": 1, "nodes": 1, "compile": False})


def pretrain(model_path: str, tokenizer, texts: Sequence[str], settings: PretrainConfig, train: TrainConfig,
             seed: int, out_dir: Path, on_metrics: MetricsCallback | None = None) -> TrainResult:
    """Continue MLM pretraining of `model_path` on `texts` (already decontaminated, nerflow.decontaminate);
    `out_dir/best` is then a Hugging Face model folder that `train` starts from. Resumable like `fit`."""
    if settings.batch_size is None and settings.batch_tokens is None:
        raise ValueError("set pretrain.batch_tokens (padded tokens per step) or pretrain.batch_size")
    if tokenizer.mask_token_id is None:
        raise ValueError(f"model {model_path}: its tokenizer has no mask token; it cannot be pretrained with MLM")
    cfg = loop_settings(settings, train)
    return fit(mlm_trainable(model_path, tokenizer, texts, settings, cfg, seed), cfg, seed, out_dir, on_metrics)


def new_head_weights(model_path: str) -> list[str]:
    """The masked-LM head weights `model_path`'s checkpoint lacks, newly initialised when it is loaded for
    pretraining. A sentence-embedding model ships its encoder alone: the offline all-MiniLM-L6-v2 has no `cls.*`."""
    from transformers import AutoModelForMaskedLM

    _, info = AutoModelForMaskedLM.from_pretrained(model_path, dtype=torch.float32, output_loading_info=True)
    return sorted(info["missing_keys"])


def validated_texts(validated: Path, split: str) -> list[str]:
    """The texts of a validated split (`<split>.jsonl`, the shape every task type writes): a document's `text`, or
    a sentence's `tokens` joined by spaces. An absent split has none."""
    path = Path(validated) / f"{split}.jsonl"
    if not path.exists():
        return []
    texts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                texts.append(row["text"] if "text" in row else " ".join(row["tokens"]))
    return texts


def pretrain_stage(model_path: str, validated: Path, settings: PretrainConfig, train: TrainConfig, seed: int,
                   out_dir: Path, on_metrics: MetricsCallback | None = None) -> dict:
    """The pipeline's `pretrain` stage: `pretrain.text` (default: the training split's texts) without the exact and
    near duplicates of validation and test texts, then `pretrain`. Returns the summary the stage records."""
    from transformers import AutoTokenizer

    texts = read_texts(settings.text) if settings.text else validated_texts(validated, "train")
    held_out = validated_texts(validated, "validation") + validated_texts(validated, "test")
    started = time.perf_counter()
    clean = decontaminate(texts, held_out, settings.near_duplicate)
    decontaminate_seconds = time.perf_counter() - started
    if len(clean.texts) < 2:   # one is held out to score epochs
        source = "pretrain.text" if settings.text else "the training texts (pretrain.text unset)"
        raise ValueError(f"{source}: {len(texts)} texts, {clean.exact} exact and {clean.near} near duplicates of "
                         f"validation/test texts removed, {len(clean.texts)} left; pretraining needs at least 2")
    new_head = new_head_weights(model_path)
    if new_head:
        # why it matters: the encoder's first updates come through a random head, and a short run learns too little
        # of the head to teach the encoder anything (docs/benchmarks.md, "Task-adaptive pretraining")
        log.warning("pretrain: %s has no masked-LM head (%d weights newly initialised: %s): pretraining learns one "
                    "from scratch; watch pretrain/val_masked_token_prob, and compare the fine-tuned score with a "
                    "run without pretraining", model_path, len(new_head), ", ".join(new_head))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    result = pretrain(model_path, tokenizer, clean.texts, settings, train, seed, out_dir, on_metrics)
    return {"best_dir": str(result.best_dir), "texts": len(texts), "new_head_weights": len(new_head),
            "removed_exact": clean.exact,
            "removed_near": clean.near, "decontaminate_seconds": decontaminate_seconds, "steps": result.steps,
            "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "lr": result.lr,
            "best_masked_token_prob": result.best_score, "tokens_seen": result.tokens_seen,
            "train_seconds": result.train_seconds, "tokens_per_s": result.train_tokens_per_s}
