"""The `distill` section: a smaller student trained from the fine-tuned model (knowledge distillation,
nerflow.distill) and offered to the export stage as one more runtime, served only when its validation F1 is within
`export.max_f1_drop` of the fine-tuned model's. Off by default; off, the stage is absent from the plan and no other
stage's key changes."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from nerflow.config_marks import Section


class DistillConfig(Section):
    enabled: bool = False
    # encoder layers the student keeps of the fine-tuned model's (evenly spread, first and last kept: 0, 2, 3, 5 of
    # 6); its weights start as those layers'. On a 2-core CPU an int8 MiniLM runs ~2.9x PyTorch fp32's CoNLL-2003
    # words/s with 4 layers, ~3.3x with 3, against ~1.9x with all 6; distilled for 8 epochs (sentence context) a
    # 4-layer student lost 0.05 points of validation F1 as int8, a 3-layer one 0.92 (docs/benchmarks.md, "What 3x on
    # CoNLL-2003 would take")
    layers: PositiveInt = 4
    epochs: PositiveInt = 8      # the 4-layer student was still improving at 8 (0.9088 at 5, 0.9150 at 8)
    # auto: train.lr's rule (nerflow.optim.default_lr) for the student's size, run length and batch: 3e-4 at
    # sentence context's ~42 sentences per step (what the probe used), ~1e-4 at document context's ~8 windows per
    # step, where a fixed 3e-4 left the CoNLL-2003 student at validation F1 0.872 after 3 of 8 epochs (teacher 0.919)
    lr: PositiveFloat | Literal["auto"] = "auto"
    # the loss: alpha x the task's own loss on the gold labels + (1 - alpha) x T^2 x KL(teacher || student) at
    # temperature T on the same scored positions (Hinton et al. 2015); T^2 keeps the soft term's gradients the
    # size of the hard term's
    temperature: PositiveFloat = 2.0
    alpha: float = Field(0.5, ge=0.0, le=1.0)
