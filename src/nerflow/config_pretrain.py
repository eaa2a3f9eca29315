"""The `pretrain` section: continued masked-language-model pretraining of the base model before `train`
(nerflow.pretrain). Off by default; off, the stage is absent from the plan and no other stage's key changes."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt

from nerflow.config_marks import IDENTITY


class PretrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    # files or folders of unlabelled text, one paragraph or document per line; empty: the task's own training texts
    # (task-adaptive pretraining). The text's content enters the key (the plan's `pretrain_text` identity), not
    # where it lies.
    text: Annotated[tuple[str, ...], IDENTITY] = ()
    epochs: PositiveInt = 1
    lr: PositiveFloat = 5e-5
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0)   # of a text's sub-tokens; 80/10/10 mask/random/kept
    max_length: PositiveInt = 128          # sub-tokens per example incl. special tokens; longer lines are cut in pieces
    batch_tokens: PositiveInt | None = 4096   # padded positions per step (length-grouped), or ...
    batch_size: PositiveInt | None = None     # ... this many sequences per step (then batch_tokens is unused)
    min_steps: NonNegativeInt = 0
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0)
    heldout_every: PositiveInt = 20        # every Nth text scores the epoch (masked-token loss), not trained on
    near_duplicate: float = Field(0.8, gt=0.0, le=1.0)   # word 5-gram Jaccard with a validation/test text: removed


def text_files(paths: Sequence[str | Path], key: str = "pretrain.text") -> list[Path]:
    """The files `pretrain.text` names, folders expanded (their files sorted, hidden ones skipped), in order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"config key {key!r}: {p} is neither a file nor a folder")
    return files
