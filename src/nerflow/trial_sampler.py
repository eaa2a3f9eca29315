"""A sampler whose draws for trial N depend on the study's seed and N, not on what this process drew before.

Optuna's samplers keep one random stream per sampler object, seeded once. `nerflow tune` makes a new sampler in
every process that works on a study: the same command after Ctrl-C or a kill, and each worker of a pool. Seeded the
same way, each began the stream again, so the first random trial of a continued study, and the first of every worker,
drew the values of the study's first trial: a duplicate that the stage cache answered in seconds (no new information,
one trial fewer). Here the stream is started afresh before each trial from (seed, trial number): trial numbers are
unique in a study, so no two trials share a stream, and a continued study draws what an uninterrupted one would have
(the random trials exactly; the model-based ones from the same history)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial `number`'s draws: independent streams per (seed, number) (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """`make(seed)` (a sampler, e.g. a TPESampler) made anew before each trial with `trial_seed(seed, number)`; every
    other call goes to it. Optuna's samplers read the study's history from its storage, so a new one per trial loses
    nothing but the old stream."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int):
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner = self._make(trial_seed(self._seed, trial.number))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
