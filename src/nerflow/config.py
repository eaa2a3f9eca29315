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
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    model_validator,
)

from nerflow.config_distill import DistillConfig
from nerflow.config_errors import describe, key_lines
from nerflow.config_export import ExportConfig
from nerflow.config_marks import IDENTITY, REPORTING, NotInKey  # noqa: F401 - read from here by other modules
from nerflow.config_marks import Section as _Section
from nerflow.config_monitor import MonitorConfig
from nerflow.config_pretrain import PretrainConfig
from nerflow.config_promote import PromoteConfig
from nerflow.config_train import LoraConfig, TrainConfig  # noqa: F401 - read from here by other modules


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""




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
    # learning curves (`nerflow curve`): train on this share of the training split, drawn with `sample_seed`
    # (NER: whole documents; texts: stratified by label); validation and test stay whole (nerflow.subsets)
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)
    sample_seed: int = 13


class ModelConfig(_Section):
    """The base model; the stages key it by its identity (a local folder's content, a hub id's commit)."""

    name_or_path: Annotated[str, IDENTITY] = "all-MiniLM-L6-v2"   # hub id, local directory, or the offline MiniLM
    revision: Annotated[str | None, IDENTITY] = None   # a hub id's commit, branch or tag (None: main)


class TokenizeConfig(_Section):
    max_length: PositiveInt | None = 128     # sub-tokens per window incl. special tokens; None: the model's limit
    stride: NonNegativeInt = 32              # sub-tokens shared by consecutive windows of a long text


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
    distill: DistillConfig = DistillConfig()      # optional stage (nerflow.distill)
    export: ExportConfig = ExportConfig()         # optional stage (nerflow.export)
    registry: RegistryConfig = RegistryConfig()
    promote: PromoteConfig = PromoteConfig()
    monitor: MonitorConfig = MonitorConfig()      # `nerflow drift`; optional stage (the drift reference)

    @model_validator(mode="after")
    def _distill_is_served_through_export(self):
        # the export stage is what measures the student and may serve it: without it the stage would never run
        if self.distill.enabled and not self.export.enabled:
            raise ValueError("distill.enabled=true needs export.enabled=true: the export stage measures the student "
                             "and serves it when it qualifies")
        return self


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
