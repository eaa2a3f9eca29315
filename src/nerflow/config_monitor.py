"""The `monitor` section: how `nerflow drift` compares what a version reads with what it was validated on
(nerflow.drift_calibration and nerflow.drift for the checks, nerflow.drift_profile for the numbers,
docs/monitoring.md for the defaults and why). Only the optional `reference` stage reads it (`monitor.reference`, and
the keys that choose the reference's texts); the check settings change no cached result."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt


class MonitorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # profile the validation split at registration (the `reference` stage), logged on the version's run; off, the
    # first `nerflow drift` of a version computes it (the shipped configs turn it on)
    reference: bool = False
    # family-wise false-alarm level of one check of a batch: each of the k checks runs at alpha / k (Bonferroni)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    # hold-out batches (drawn by document, as large as the checked batch) each check's p-value is computed against;
    # raised to 2k / alpha when that is more, so a p-value can fall below the per-check level alpha / k
    holdout_batches: PositiveInt = 400
    # permutations of the embedding test when a reference has no hold-out (every validation document in the
    # reference: a tiny split); raised like holdout_batches
    permutations: PositiveInt = 500
    # share of the validation split's documents that make the reference; the rest (the hold-out) calibrates the checks
    reference_share: float = Field(0.5, gt=0.0, lt=1.0)
    max_reference: PositiveInt = 2000       # texts in the reference, and in the hold-out, at most
    # training texts (whole documents) whose input descriptors calibrate the descriptor checks beside the hold-out's
    # (nerflow.drift_calibration; tokenizer only, ~1 s per 1,000 sentences); 0 = the hold-out alone
    max_training_texts: NonNegativeInt = 20000
    min_texts: PositiveInt = 20             # a batch of fewer texts is refused: too few to decide anything
    batch_size: PositiveInt = 64            # texts per forward pass when a batch is profiled
    # texts of a drifted batch written out to label first (labelling/texts-to-label.jsonl on the check's run)
    labelling_batch: PositiveInt = 50
