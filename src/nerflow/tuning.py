"""Hyperparameter search, the library side: the search space (a YAML file, or the task type's default), its
checks, and the sampler and pruner settings, stated (nerflow tune, flows/tune_flow.py).

A space file maps config keys to a range or to choices:

    train.lr: {low: 1.0e-5, high: 5.0e-4, log: true}   # a float range, log scale
    train.epochs: {low: 2, high: 6}                     # both ends integers: an integer range (`step` optional)
    train.freeze: {choices: [none, embeddings, 1, 2]}   # one of these

A key must be a config key a trial's stages read (validate, tokenize, pretrain, train, evaluate: the sections of
their declarations in nerflow.graph) and one that changes what they compute (not a location or a reporting
setting); every end and choice must make a valid config. Why these sampler and pruner settings: `settings`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nerflow.config import ConfigError, PipelineConfig, hash_json, not_in_key

# what a trial runs: the pipeline's stages up to evaluate (its score decides), never register or promote
TRIAL_STAGES = ("validate", "tokenize", "pretrain", "train", "evaluate")
OBJECTIVE = "val/f1"   # maximised: validation F1 of the best epoch (macro F1 for texts), as `evaluate` logs it


@dataclass(frozen=True)
class Dimension:
    key: str
    origin: str                         # "space.yaml:3", or "default space (ner)"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def is_int(self) -> bool:
        return not self.choices and all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))

    def suggest(self, trial) -> Any:
        """This dimension's value for an Optuna trial."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.key, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def ends(self) -> list[Any]:
        """The values that must each make a valid config: every choice, or both ends of the range."""
        return list(self.choices) if self.choices else [self.low, self.high]

    def describe(self) -> str:
        if self.choices:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"[{self.low}, {self.high}]" + (" log" if self.log else "") + (f" step {self.step}" if self.step else "")


@dataclass(frozen=True)
class Space:
    dimensions: tuple[Dimension, ...]
    source: str                         # the file, or "default"

    def as_data(self) -> dict[str, dict]:
        """The space as data (what its study's name hashes, what the parent run logs)."""
        return {d.key: ({"choices": list(d.choices)} if d.choices else
                        {"low": d.low, "high": d.high, "log": d.log, **({"step": d.step} if d.step else {})})
                for d in self.dimensions}

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's values as `key=value` config overrides (values as YAML reads them back)."""
        return [f"{key}={yaml.safe_dump(params[key], default_flow_style=True).strip().removesuffix('...').strip()}"
                for key in (d.key for d in self.dimensions) if key in params]


# The default space: what the hand sweep of docs/benchmarks.md varied. The ranges hold the defaults (lr "auto"
# lands near 1e-4 for MiniLM-sized models; freeze 1; warmup 0.1; 3 epochs) so the study can find them again. Each
# task type adds its own keys (its descriptor's `tune_space`: the token budget per step).
COMMON_SPACE: dict[str, dict] = {
    "train.lr": {"low": 1.0e-5, "high": 5.0e-4, "log": True},
    "train.warmup_ratio": {"low": 0.0, "high": 0.2},
    "train.freeze": {"choices": ["none", "embeddings", 1, 2]},
    "train.epochs": {"low": 2, "high": 6},
}


def default_space(cfg: PipelineConfig) -> dict[str, dict]:
    """The task type's default space; a config that batches by sequences (`train.batch_size`) gets that key."""
    from nerflow import task_types

    space = {**COMMON_SPACE, **getattr(task_types.get(cfg.task), "tune_space", {})}
    if cfg.train.batch_size is not None:
        space.pop("train.batch_tokens", None)
        space["train.batch_size"] = {"choices": [8, 16, 32]}
    return space


def load_space(path: Path | None, cfg: PipelineConfig) -> Space:
    """The space of `path` (YAML), or the task type's default; its shape checked (`check_space` checks it against
    the config). Errors name the file and line."""
    from nerflow.config_errors import key_lines

    if path is None:
        raw, lines, source = default_space(cfg), {}, "default"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: search space file not found")
        text = path.read_text()
        try:
            raw = yaml.safe_load(text)
            lines = key_lines(text) if raw else {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise ConfigError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML: "
                              f"{getattr(e, 'problem', None) or e}") from None
        source = str(path)
        if not raw:
            raise ConfigError(f"{path}: the search space is empty: give at least one key, e.g. "
                              "`train.lr: {low: 1.0e-5, high: 5.0e-4, log: true}`")
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}:1: a search space is a mapping of config keys to ranges or choices")
    dims = []
    for key, spec in raw.items():
        origin = f"{source}:{lines[str(key)]}" if str(key) in lines else f"default space ({cfg.task})"
        dims.append(_dimension(str(key), spec, origin))
    return Space(tuple(dims), source)


def _dimension(key: str, spec: Any, origin: str) -> Dimension:
    def bad(what: str) -> ConfigError:
        return ConfigError(f"{origin}: {key}: {what}")

    if not isinstance(spec, dict):
        raise bad("expected {low: A, high: B[, log: true][, step: S]} or {choices: [...]}, got "
                  f"{spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise bad(f"unknown field {sorted(unknown)[0]!r} (fields: low, high, log, step, choices)")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise bad("choices cannot be combined with low/high/log/step")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise bad("choices must be a non-empty list")
        if any(isinstance(c, (dict, list)) for c in choices):
            raise bad("each choice must be a plain value (a number, a string, true/false, null)")
        return Dimension(key, origin, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise bad("a range needs both low and high")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise bad(f"{name} must be a number, got {value!r}")
    if not isinstance(log, bool):
        raise bad(f"log must be true or false, got {log!r}")
    if low >= high:
        raise bad(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise bad(f"a log-scale range needs low > 0 (got {low})")
    if step is not None and (step <= 0 or log):
        raise bad("step must be > 0, and cannot be combined with log")
    return Dimension(key, origin, low=low, high=high, log=log, step=step)


def trial_sections() -> set[str]:
    """The config keys or sections the stages of a trial read (their declarations in nerflow.graph)."""
    from nerflow import graph

    stages = [*graph.PIPELINE.stages, *graph.PIPELINE.optional]
    return {read for s in stages if s.name in TRIAL_STAGES for read in s.reads}


def check_space(space: Space, config: Path, overrides: list[str], cfg: PipelineConfig) -> None:
    """Every key exists for this task type, is read by a trial's stages and changes what they compute; every end
    and choice makes a valid config. One error naming the space's file and line."""
    from nerflow.config import load_config

    sections = trial_sections()
    unkeyed = not_in_key(type(cfg))
    for dim in space.dimensions:
        readers = [s for s in sections if dim.key == s or dim.key.startswith(s + ".")]
        if dim.key in unkeyed:
            raise ConfigError(f"{dim.origin}: {dim.key} does not change what a trial trains "
                              f"({unkeyed[dim.key]} setting): nothing to tune")
        for value in dim.ends():
            override = f"{dim.key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            try:
                load_config(config, [*overrides, override])
            except ConfigError as e:
                raise ConfigError(f"{dim.origin}: {str(e).split(': ', 1)[-1]}") from None
        if not readers:
            raise ConfigError(f"{dim.origin}: {dim.key} is not read by a trial's stages ("
                              f"{', '.join(TRIAL_STAGES)} read {', '.join(sorted(sections))}): it cannot change "
                              "the validation score")


@dataclass(frozen=True)
class SearchSettings:
    """Optuna's defaults make a small study random and never prune: TPE samples its first 10 trials at random and
    MedianPruner lets its first 5 run whole. nerflow's: TPE models the space after a third of the trials (at least
    2, at most 10) random ones, multivariate (the learning rate and the epochs interact), seeded by the config's
    seed; the median pruner judges from the 3rd trial on (2 complete ones give a median), from the end of a trial's
    `warmup_epochs`-th epoch on, at every epoch."""

    trials: int
    seed: int
    startup_trials: int
    pruner_startup_trials: int = 2
    warmup_epochs: int = 1

    @classmethod
    def for_study(cls, trials: int, seed: int, startup_trials: int | None = None,
                  pruner_startup_trials: int = 2, warmup_epochs: int = 1) -> SearchSettings:
        startup = startup_trials if startup_trials is not None else max(2, min(10, trials // 3))
        return cls(trials, seed, startup, pruner_startup_trials, warmup_epochs)

    def sampler(self):
        """TPE, its draws for each trial seeded by (seed, trial number): a continued study or a second worker does
        not start the stream again and repeat the first trial's values (nerflow.trial_sampler)."""
        import optuna

        from nerflow.trial_sampler import TrialSeededSampler

        return TrialSeededSampler(lambda seed: optuna.samplers.TPESampler(
            n_startup_trials=self.startup_trials, seed=seed, multivariate=True), self.seed)

    def pruner(self):
        import optuna

        # steps are epochs (1, 2, ...); a step below n_warmup_steps is never pruned
        return optuna.pruners.MedianPruner(n_startup_trials=self.pruner_startup_trials,
                                           n_warmup_steps=self.warmup_epochs, interval_steps=1)

    def describe(self) -> str:
        return (f"sampler TPE (multivariate, {self.startup_trials} random startup trials, each trial seeded by "
                f"seed {self.seed} and its number), pruner median (after {self.pruner_startup_trials} complete "
                f"trials, from epoch {self.warmup_epochs} on)")

    def as_params(self) -> dict[str, str]:
        return {"tune.trials": str(self.trials), "tune.sampler": "TPESampler(multivariate=True), seeded per trial",
                "tune.sampler_seed": str(self.seed), "tune.sampler_startup_trials": str(self.startup_trials),
                "tune.pruner": "MedianPruner", "tune.pruner_startup_trials": str(self.pruner_startup_trials),
                "tune.pruner_warmup_epochs": str(self.warmup_epochs), "tune.objective": f"maximize {OBJECTIVE}"}


def still_warming_up(epoch: int, train_cfg) -> bool:
    """Whether a trial's learning-rate warmup (`train.warmup_ratio` of its `train.epochs`) still runs at the end of
    `epoch`: the pruner does not judge it then. A study whose space holds the epochs or the warmup compares trials
    whose schedules differ; in the CoNLL-2003 study a 6-epoch trial with 18% warmup was pruned on an epoch-1 score
    taken before its rate had peaked (docs/benchmarks.md, "A 12-trial study")."""
    return epoch < train_cfg.warmup_ratio * train_cfg.epochs


def study_name(cfg: PipelineConfig, space: Space) -> str:
    """One study per (model name, base config, space): the same command continues it, a changed config or space
    starts another. The space's keys are left out of the config part (the trials set them)."""
    from nerflow.config import flatten

    keyed = {k: v for k, v in flatten(cfg).items() if k not in space.as_data() and k != "cache_dir"}
    return f"{cfg.registry.model_name}-{hash_json({'config': keyed, 'space': space.as_data()})[:12]}"


STORAGE_ENV = "NERFLOW_TUNE_STORAGE"   # a study's storage URL (the team's: PostgreSQL, a database of its own)
TUNE_DIR = Path("tune")                # local studies: ./tune/optuna.db and a folder per study, as ./mlruns/


def storage_url() -> str:
    """NERFLOW_TUNE_STORAGE, else a sqlite file of its own (never MLflow's database: Optuna and MLflow both keep
    their schema version in alembic's default table), ./tune/optuna.db."""
    import os

    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    TUNE_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(TUNE_DIR / 'optuna.db').resolve()}"


def study_folder(name: str) -> Path:
    """Where a study's summary, trials table, plots and best config are left on this machine."""
    return TUNE_DIR / name
