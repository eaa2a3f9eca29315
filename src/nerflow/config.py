"""One typed, frozen pipeline config: YAML plus `key=value` overrides, resolved, flattened and hashed.

The config is a discriminated union on `task`: each task type has its own root class (`nerflow.ner.config.NerConfig`,
`nerflow.textcat.config.TextcatConfig`) whose sections extend the shared ones below with the keys only that task
reads, so a key the task does not read is an error naming it. The union is assembled through the task-type seam
(`nerflow.task_types`): this module names no task type.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from nerflow.config_errors import describe, key_lines
from nerflow.config_marks import IDENTITY, REPORTING, NotInKey  # noqa: F401 - read from here by other modules
from nerflow.config_pretrain import PretrainConfig
from nerflow.config_promote import PromoteConfig


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""




class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def key_settings(section: BaseModel) -> dict[str, Any]:
    """The section's values that enter stage keys: every field except those marked `NotInKey`, nested sections
    included (as their own key settings)."""
    out: dict[str, Any] = {}
    for name, field in type(section).model_fields.items():
        if any(isinstance(m, NotInKey) for m in field.metadata):
            continue
        value = getattr(section, name)
        out[name] = key_settings(value) if isinstance(value, BaseModel) else \
            section.model_dump(mode="json", include={name})[name]
    return out


def not_in_key(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """`{"train.log_every": "reporting", ...}`: every field of a config class that no stage key holds, and why."""
    out: dict[str, str] = {}
    for name, field in model.model_fields.items():
        marks = [m for m in field.metadata if isinstance(m, NotInKey)]
        if marks:
            out[f"{prefix}{name}"] = marks[0].why
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out |= not_in_key(field.annotation, f"{prefix}{name}.")
    return out


class SplitConfig(_Section):
    """How to cut validation/test out of the train file when they are not given as files."""

    validation: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 13


class DataConfig(_Section):
    """Where the labelled data is, shared by every task type; each task's subclass adds `format` and its own keys.
    Locations are not in any key: the data identity (nerflow.data_identity) hashes each file's role and content."""

    format: str
    dir: Annotated[Path, IDENTITY] = Path(".")   # relative file names below are resolved against this
    train: Annotated[str, IDENTITY] = "train.txt"   # a file, or for `folders` the folder of one folder per label
    validation: Annotated[str | None, IDENTITY] = None   # None: split off train (by document / stratified)
    test: Annotated[str | None, IDENTITY] = None
    hf_dataset: Annotated[str | None, IDENTITY] = None    # a hub id or a local dataset folder (format: hf)
    hf_revision: Annotated[str | None, IDENTITY] = None   # a hub dataset's commit (None: main, resolved when planned)
    split: SplitConfig = SplitConfig()
    limit_train: PositiveInt | None = None       # keep only the first N examples (quick experiments)
    limit_validation: PositiveInt | None = None
    limit_test: PositiveInt | None = None


class ModelConfig(_Section):
    """The base model; the stages key it by its identity (a local folder's content, a hub id's commit)."""

    name_or_path: Annotated[str, IDENTITY] = "all-MiniLM-L6-v2"   # hub id, local directory, or the offline MiniLM
    revision: Annotated[str | None, IDENTITY] = None   # a hub id's commit, branch or tag (None: main)


class TokenizeConfig(_Section):
    max_length: PositiveInt | None = 128     # sub-tokens per window incl. special tokens; None: the model's limit
    stride: NonNegativeInt = 32              # sub-tokens shared by consecutive windows of a long text


class LoraConfig(_Section):
    """Low-rank adapters (Hu et al. 2021) through peft; used when `train.adapter: lora`."""
    rank: PositiveInt = 8                  # peft's LoraConfig default r
    alpha: PositiveFloat = 16.0            # update scaled by alpha / rank; 2x rank as in peft's examples
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # peft's own default for BERT-like models (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["bert"]) and the
    # LoRA paper's choice (W_q, W_v); "all-linear" adapts every linear layer of the encoder
    target_modules: list[str] | Literal["all-linear"] = ["query", "value"]


class TrainConfig(_Section):
    epochs: PositiveInt = 3
    lr: PositiveFloat | Literal["auto"] = "auto"   # auto: by model size, run length and batch, nerflow.optim.default_lr
    batch_tokens: PositiveInt | None = 1024        # padded positions per optimizer step (length-grouped batches)
    batch_size: PositiveInt | None = None          # or: this many sequences per step (the recipe's way)
    min_steps: NonNegativeInt = 100                # small data: the token budget shrinks to give this many steps
    eval_batch_tokens: PositiveInt = 16384         # validation: padded positions per forward pass ...
    eval_batch_size: PositiveInt = 256             # ... and at most this many sequences
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    max_grad_norm: PositiveFloat = 1.0
    freeze: Literal["none", "word_embeddings", "embeddings"] | NonNegativeInt = 1   # N: embeddings + first N layers
    # lora: the base model is frozen by peft and only the adapters and the task head train, so `freeze` is unused
    # (nerflow.adapters); `best` is the merged model, the adapter with its head is kept beside it
    adapter: Literal["none", "lora"] = "none"
    lora: LoraConfig = LoraConfig()
    early_stopping_patience: NonNegativeInt = 2    # epochs without a better validation score; 0 = off
    checkpoint_every: Annotated[NonNegativeInt, REPORTING] = 200   # steps; 0 = only at epoch ends
    keep_checkpoints: Annotated[PositiveInt, REPORTING] = 2
    log_every: Annotated[PositiveInt, REPORTING] = 20              # steps between logged training-loss points
    group_by_length: bool = True                   # batches of similar length: less padding, same epochs
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"   # auto: bf16 on GPUs that have it, else fp16;
    #                                                               fp32 on CPU
    compile: bool = False                          # torch.compile the model (slower on CPU: docs/benchmarks.md)
    devices: PositiveInt | Literal["auto"] = 1     # processes per machine (DDP through torchrun); auto: one per GPU
    nodes: PositiveInt = 1                         # machines; more than 1 needs master_addr (docs/distributed.md)
    master_addr: Annotated[str | None, REPORTING] = None   # node 0's address, reachable from the other nodes
    master_port: Annotated[int, REPORTING, Field(ge=1, le=65535)] = 29500
    # torch CPU threads (None: torch's default). In the key: the thread count changes the order of floating-point
    # sums, so the same seed can give other weights with another count.
    num_threads: PositiveInt | None = None

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
    # In the key: the batch decides the padded shapes, which can change the last bits of a score.
    batch_size: PositiveInt = 256        # sequences per forward pass, at most ...
    batch_tokens: PositiveInt = 16384    # ... and padded positions per forward pass


class RegistryConfig(_Section):
    model_name: str = "nerflow-ner"
    alias: str = "challenger"


class PipelineConfig(_Section):
    """The shared root; a task type's subclass narrows `task` to its name and its sections to its own types."""

    task: str
    experiment: str = "nerflow"
    seed: int = 42
    cache_dir: Path = Path(".cache/nerflow")   # stage outputs, keyed by content
    data: DataConfig
    model: ModelConfig = ModelConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    pretrain: PretrainConfig = PretrainConfig()   # optional stage (nerflow.pretrain)
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    registry: RegistryConfig = RegistryConfig()
    promote: PromoteConfig = PromoteConfig()


CACHE_DIR_ENV = "NERFLOW_CACHE_DIR"   # the default cache_dir when the config does not set one


def load_config(path: Path | str, overrides: list[str] = (), resolved: bool = False) -> PipelineConfig:
    """Read YAML, apply `a.b=value` overrides (values parsed as YAML), validate against the config class of its
    task type. An error names where the bad key came from (the override, or the file and its line) and suggests the
    closest valid key. `resolved`: the file is a resolved config an earlier nerflow logged with a run
    (`config/resolved.yaml`, read by `nerflow rerun`); those held every task type's keys, and the keys this task
    does not read are dropped when they hold their defaults (nerflow.config_errors.drop_unread)."""
    from nerflow import task_types

    path = Path(path)
    raw, origins = _read_yaml(path)
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
        raw["task"] = task_types.canonical(raw.get("task"))
    except ValueError as e:
        raise ConfigError(f"{origins.get('task', path)}: config key 'task': {e}") from None
    model = task_types.config_type(raw["task"])
    if resolved:
        from nerflow.config_errors import drop_unread

        raw = drop_unread(raw, model, path, origins, ConfigError)
    try:
        cfg = model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe(e, path, origins, model)) from None
    # Absolute paths: the resolved config logged with a run must mean the same from any working directory
    # (`nerflow rerun`). Locations are not part of any cache key, so this changes no stage's key.
    return cfg.model_copy(update={"cache_dir": cfg.cache_dir.resolve(),
                                  "data": cfg.data.model_copy(update={"dir": cfg.data.dir.resolve()}),
                                  "pretrain": cfg.pretrain.model_copy(update={
                                      "text": tuple(str(Path(t).resolve()) for t in cfg.pretrain.text)})})


def _read_yaml(path: Path) -> tuple[dict, dict[str, str]]:
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
    return raw, origins


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
