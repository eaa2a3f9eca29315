"""One typed, frozen pipeline config: YAML plus `key=value` overrides, resolved, flattened and hashed."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError,
                      model_validator)

from nerflow.config_errors import describe, key_lines


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitConfig(_Section):
    """How to cut validation/test out of the train file when they are not given as files."""

    validation: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 13


class DataConfig(_Section):
    """Where the labelled data is and how to read it. Each task type reads only its own keys (nerflow.task_types), and
    only those enter its stage keys."""

    format: Literal["conll", "jsonl", "hf", "csv", "tsv", "folders"] = "conll"   # NER: conll/jsonl/hf;
    #                                                text classification: csv/tsv/jsonl/folders/hf
    dir: Path = Path(".")                # relative file names below are resolved against this
    train: str = "train.txt"             # a file, or for `folders` the folder holding one folder per label
    validation: str | None = None        # None: split off train (by document / stratified by label)
    test: str | None = None
    hf_dataset: str | None = None        # a hub id or a local dataset folder, used when format == "hf"
    hf_revision: str | None = None       # a hub dataset's commit (None: resolved from main when planned)
    split: SplitConfig = SplitConfig()
    limit_train: PositiveInt | None = None       # keep only the first N examples (quick experiments)
    limit_validation: PositiveInt | None = None
    limit_test: PositiveInt | None = None
    # token classification (NER)
    tag_column: int = -1                 # CoNLL: which column holds the tag (default: the last)
    scheme: Literal["iob2", "iob1", "bioes"] = "iob2"
    invalid_iob2: Literal["repair", "fail"] = "repair"   # I-X after O / another type in IOB2 input
    min_tokens: PositiveInt = 1          # sentence-length bounds checked by validation
    max_tokens: PositiveInt = 1000
    # text classification
    text_column: str = "text"            # csv/tsv/hf column (jsonl field) with the text
    label_column: str = "label"          # ... with the label (jsonl: "label", or "labels" for a list)
    labels: list[str] | None = None      # the label set; None: the labels seen in train
    multi_label: bool = False            # several labels per text (sigmoid, a threshold per label)
    label_separator: str = "|"           # csv/tsv multi-label: labels within one cell
    min_class_examples: PositiveInt = 10  # fewer train examples of a class: a validation warning


class ModelConfig(_Section):
    name_or_path: str = "all-MiniLM-L6-v2"   # hub id, local directory, or the offline PyPI MiniLM
    revision: str | None = None


class TokenizeConfig(_Section):
    max_length: PositiveInt | None = 128     # sub-tokens per window incl. special tokens; None: the model's limit
    stride: NonNegativeInt = 32              # sub-tokens shared by consecutive windows of a long text
    # token classification
    label_all_subtokens: bool = False
    # text classification: what happens to a text longer than max_length (nothing is cut unless chosen here)
    long_documents: Literal["head", "head_tail", "windows"] = "windows"   # windows: every token is read
    head_share: float = Field(0.25, gt=0.0, lt=1.0)   # head_tail: this share of the budget from the start
    pool: Literal["mean", "max"] = "mean"    # windows: a text's logits are the mean or max over its windows
    window_training: Literal["each", "pooled"] = "each"   # windows: each window trained with the text's label,
    #                                                       or the pooled logits trained per text


class TrainConfig(_Section):
    epochs: PositiveInt = 3
    lr: PositiveFloat | Literal["auto"] = "auto"   # auto: by model size, run length and batch, nerflow.optim.default_lr
    batch_tokens: PositiveInt | None = 1024        # padded positions per optimizer step (length-grouped batches)
    batch_size: PositiveInt | None = None          # or: this many sequences per step (the recipe's way)
    min_steps: NonNegativeInt = 100                # small data: the token budget shrinks to give at least this many steps
    eval_batch_tokens: PositiveInt = 16384         # validation: padded positions per forward pass ...
    eval_batch_size: PositiveInt = 256             # ... and at most this many sequences
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    max_grad_norm: PositiveFloat = 1.0
    freeze: Literal["none", "word_embeddings", "embeddings"] | NonNegativeInt = 1   # N: embeddings + first N layers
    early_stopping_patience: NonNegativeInt = 2    # epochs without a better validation score; 0 = off
    checkpoint_every: NonNegativeInt = 200         # steps; 0 = only at epoch ends
    keep_checkpoints: PositiveInt = 2
    log_every: PositiveInt = 20                    # steps between logged training-loss points
    group_by_length: bool = True                   # batches of similar length: less padding, same epochs
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"   # auto: bf16 on GPUs that have it, else fp16; fp32 on CPU
    compile: bool = False                          # torch.compile the model (measured slower on CPU: docs/benchmarks.md)
    devices: PositiveInt | Literal["auto"] = 1     # processes per machine (DDP through torchrun); auto: one per GPU
    nodes: PositiveInt = 1                         # machines; more than 1 needs master_addr (docs/distributed.md)
    master_addr: str | None = None                 # node 0's address, reachable from the other nodes
    master_port: int = Field(29500, ge=1, le=65535)
    num_threads: PositiveInt | None = None         # torch CPU threads; None: torch's default

    @model_validator(mode="after")
    def _one_batch_rule(self):
        """`batch_size` set (e.g. by an older config) means sequences per step: the token budget is then unused and
        is cleared, so the resolved config says which rule applied. Setting both is a mistake."""
        if self.batch_size is None:
            if self.batch_tokens is None:
                raise ValueError("set train.batch_tokens (padded tokens per step) or train.batch_size")
            return self
        if "batch_tokens" in self.model_fields_set and self.batch_tokens is not None:
            raise ValueError("set train.batch_tokens or train.batch_size, not both (batch_tokens=null to use "
                             "batch_size)")
        object.__setattr__(self, "batch_tokens", None)
        return self

    @model_validator(mode="after")
    def _nodes_need_an_address(self):
        if self.nodes > 1 and not self.master_addr:
            raise ValueError("train.nodes > 1 needs train.master_addr: the address of node 0 that every node "
                             "can reach")
        return self


class EvaluateConfig(_Section):
    batch_size: PositiveInt = 256        # sequences per forward pass, at most ...
    batch_tokens: PositiveInt = 16384    # ... and padded positions per forward pass
    # text classification
    calibration_bins: PositiveInt = 15   # expected calibration error and the reliability plot
    worst_examples: PositiveInt = 25     # the worst-classified validation and test texts kept as an artifact


class RegistryConfig(_Section):
    model_name: str = "nerflow-ner"
    alias: str = "challenger"


class PromoteConfig(_Section):
    """The evidence gate that moves `alias` (default `champion`) to a newly registered version (nerflow.promotion)."""

    auto: bool = True                           # false: stop at the evidence, a person promotes
    alias: str = "champion"
    min_delta: float = Field(0.0, ge=0.0)       # test F1 must beat the champion's by more than this (a tie keeps it)
    min_f1: float = Field(0.1, ge=0.0, le=1.0)  # a floor: a model that predicts only `O` (F1 0) never passes
    min_support: NonNegativeInt = 20            # entity types (classes) with fewer test examples never reject ...
    max_type_drop: float = Field(0.02, ge=0.0)  # ... others may lose at most this much F1


TASK_ALIASES = {"ner": "token-classification"}
TASK_FORMATS = {"token-classification": ("conll", "jsonl", "hf"),
                "text-classification": ("csv", "tsv", "jsonl", "folders", "hf")}


class PipelineConfig(_Section):
    task: Literal["token-classification", "text-classification"] = "token-classification"   # or "ner"
    experiment: str = "nerflow"
    seed: int = 42
    cache_dir: Path = Path(".cache/nerflow")   # stage outputs, keyed by content
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    registry: RegistryConfig = RegistryConfig()
    promote: PromoteConfig = PromoteConfig()

    @model_validator(mode="before")
    @classmethod
    def _task_alias(cls, raw):
        if isinstance(raw, dict) and raw.get("task") in TASK_ALIASES:
            raw = {**raw, "task": TASK_ALIASES[raw["task"]]}
        return raw

    @model_validator(mode="after")
    def _format_fits_the_task(self):
        if self.data.format not in TASK_FORMATS[self.task]:
            raise ValueError(f"data.format={self.data.format} is not a {self.task} format (one of "
                             f"{', '.join(TASK_FORMATS[self.task])})")
        return self


CACHE_DIR_ENV = "NERFLOW_CACHE_DIR"   # the default cache_dir when the config does not set one


def load_config(path: Path | str, overrides: list[str] = ()) -> PipelineConfig:
    """Read YAML, apply `a.b=value` overrides (values parsed as YAML), validate. An error names where the bad key
    came from (the override, or the file and its line) and suggests the closest valid key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    blob = path.read_bytes()
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as e:
        line = blob[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{blob[e.start]:02x}); save the file as UTF-8") from None
    try:
        raw = yaml.safe_load(text) or {}
        origins = {key: f"{path}:{line}" for key, line in key_lines(text).items()}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.epochs=1")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key.strip()}: value {value!r} is not valid YAML: {e}") from None
        _set_dotted(raw, key.strip(), parsed)
        origins[key.strip()] = f"override {item}"
    if "cache_dir" not in raw and os.environ.get(CACHE_DIR_ENV):
        # per machine, not per config: a worker keeps its stage cache on its own disk (docs/team.md)
        raw["cache_dir"] = os.environ[CACHE_DIR_ENV]
        origins["cache_dir"] = f"environment {CACHE_DIR_ENV}"
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe(e, path, origins, PipelineConfig)) from None
    # Absolute paths: the resolved config logged with a run must mean the same from any working directory
    # (`nerflow rerun`). Locations are not part of any cache key, so this changes no stage's key.
    return cfg.model_copy(update={"cache_dir": cfg.cache_dir.resolve(),
                                  "data": cfg.data.model_copy(update={"dir": cfg.data.dir.resolve()})})


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {'.'.join(parents[:i + 1])} is not a section")
        node = child
    node[leaf] = value


def resolved_dict(cfg: PipelineConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def flatten(cfg: PipelineConfig) -> dict[str, Any]:
    """`{"train.epochs": 3, ...}`: what MLflow logs as params."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = node

    walk("", resolved_dict(cfg))
    return out


def hash_json(value: Any) -> str:
    """Stable sha256 of any JSON-able value (sorted keys)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def config_hash(cfg: PipelineConfig) -> str:
    return hash_json(resolved_dict(cfg))
