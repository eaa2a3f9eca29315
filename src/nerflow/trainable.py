"""What a task gives the training loop (`Trainable`) and gets back (`TrainResult`), and how a trained model folder
is written (`save_pretrained`): the contract between `nerflow.train.fit` and the task types (nerflow.ner,
nerflow.textcat) and pretraining (nerflow.pretrain), apart from the loop itself."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nerflow import adapters, best_model


@dataclass(frozen=True)
class Trainable:
    """What the loop needs of a task. `examples[i]` has `lengths[i]` tokens and `targets[i]` loss terms (labelled
    tokens for NER, 1 for a document); `collate(examples, multiple=N)` pads examples to tensors (`labels` among
    them); `loss_sum` sums
    the loss over a batch's targets; `validate(model, device, autocast_dtype)` scores the validation split
    (`score` decides the best epoch; the other values are logged as `val/<name>`); `save(model, dir)` writes a
    loadable model; checkpoints of another `identity` are refused; `forward(model, batch)` replaces
    `model(**batch).logits` where logits need more than the model (text windows pooled per document)."""

    load_model: Callable[[], torch.nn.Module]
    examples: Sequence
    lengths: list[int]
    targets: list[int]
    collate: Callable[[list], dict[str, torch.Tensor]]
    loss_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    validate: Callable[..., dict[str, float]]
    save: Callable[[torch.nn.Module, Path], None]
    identity: dict
    score: str = "f1"
    forward: Callable[[torch.nn.Module, dict], torch.Tensor] | None = None   # default: model(**batch).logits
    # told the epoch before its batches are collated (a resumed one included): collation that draws per epoch (MLM
    # masking) then depends on (seed, epoch, example) only, and a resume draws the same
    start_epoch: Callable[[int], None] | None = None


@dataclass
class TrainResult:
    best_dir: Path
    best_score: float
    best_epoch: int
    epochs_run: int
    steps: int
    lr: float
    train_samples_per_s: float
    train_tokens_per_s: float              # real (unpadded) tokens
    padding_ratio: float = 1.0             # padded positions / real tokens
    train_seconds: float = 0.0             # time in training steps (no validation, no checkpoint writes)
    history: list[dict] = field(default_factory=list)
    checkpoint_seconds: float = 0.0        # spent writing checkpoints (all attempts but a crashed one's last write)
    checkpoint_bytes: int = 0              # the size of one checkpoint (weights + optimizer state + RNG states)
    world_size: int = 1
    batches: str = ""                      # how steps were cut ("1024 tokens per step")
    frozen_parameters: int = 0
    trainable_parameters: int = 0          # those the optimizer updates (LoRA: adapters + task head)
    adapter_bytes: int = 0                 # the saved adapter with its head (train.adapter: lora), else 0
    peak_memory_bytes: int = 0             # GPU: max allocated; CPU: the process's peak resident set
    weights_sha256: str = ""               # the weights after the last step (nerflow.train.weights_digest)
    tokens_seen: int = 0                   # real tokens of every global batch trained on, all epochs and attempts

    @property
    def best_f1(self) -> float:   # NER's name for the best validation score
        return self.best_score


def save_pretrained(model, tokenizer, target: Path, write_extra: Callable[[Path], None]) -> None:
    """Write to a sibling temp folder, then swap it in (`nerflow.best_model`): a kill at any point leaves `target`
    whole or in a state `nerflow.checkpoints.recover` repairs before training resumes. A model with LoRA adapters
    is saved merged (a plain folder that loads without peft), its adapter with its head in `adapter/` inside."""
    tmp = best_model.temp_dir(target)
    shutil.rmtree(tmp, ignore_errors=True)   # a save cut short that no repair saw (recover removes it first)
    adapters.merged(model).save_pretrained(tmp)
    adapters.save_adapter(model, tmp)
    tokenizer.save_pretrained(tmp)
    write_extra(tmp)
    best_model.swap_in(tmp, target)
