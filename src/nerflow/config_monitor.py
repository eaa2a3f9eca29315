"""The `monitor` section: how `nerflow drift` compares what a version reads with what it was validated on
(nerflow.drift for the tests, nerflow.drift_profile for the numbers, docs/monitoring.md for the defaults and why).
No pipeline stage reads it: changing it changes no cached result."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class MonitorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # family-wise false-alarm level of one check of a batch: each of the k tests runs at alpha / k (Bonferroni)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    # permutations of the embedding test: its smallest possible p-value is 1 / (permutations + 1), which must be
    # below alpha / k for drift to be found at all (500: 0.002 < 0.05 / 9)
    permutations: PositiveInt = 500
    # share of the validation split's documents that make the reference; the rest (the hold-out) measures false alarms
    reference_share: float = Field(0.5, gt=0.0, lt=1.0)
    max_reference: PositiveInt = 2000       # texts in the reference at most (a seeded sample of whole documents)
    min_texts: PositiveInt = 20             # a batch of fewer texts is refused: too few to decide anything
    batch_size: PositiveInt = 64            # texts per forward pass when a batch is profiled
