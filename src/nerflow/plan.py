"""What a pipeline run will do, decided from content hashes before anything heavy is imported.

Every stage's key is derived from its declaration in the stage graph (nerflow.graph): the keys of the stages it
consumes, the identities of the outside inputs it reads, the config settings it reads, and its code
(nerflow.code_identity). See docs/caching.md for what invalidates what.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerflow import cache, code_identity, data_identity, models
from nerflow import graph as stage_graph
from nerflow.config import PipelineConfig, hash_json, key_settings
from nerflow.graph import Graph, Stage


@dataclass(frozen=True)
class StagePlan:
    stage: str
    key: str
    parts: dict
    path: Path            # the key's pointer in the stage cache (it names the entry's current generation)
    complete: bool        # a verified output exists: the stage will be reused
    forced: bool = False  # recomputed on request (`force_from`), whether or not an output exists


@dataclass(frozen=True)
class Plan:
    graph: Graph
    stages: dict[str, StagePlan]
    identities: dict[str, Any]   # the outside inputs: "data" (per role, its content), "model"
    model_path: str
    model_revision: str | None   # a hub model's commit (None: a local folder)
    logical_run: str             # one id per (config, data, code): the keys of the stages nothing consumes

    @property
    def data_hash(self) -> str:
        return data_identity.identity_digest(self.identities["data"])

    @property
    def model_hash(self) -> str:
        return self.identities["model"]

    def first_to_compute(self) -> str | None:
        return next((s for s in self.graph.names if not self.stages[s].complete), None)


def input_identities(cfg: PipelineConfig) -> tuple[dict[str, Any], str, str | None]:
    """(identities of the outside inputs, the base model's local path or hub id, a hub model's resolved commit).
    The data by role and content (nerflow.data_identity); the base model by its files' content, or a hub id by
    the commit its revision resolves to (the tokenize and train stages load exactly that commit)."""
    model_path = models.resolve_model(cfg.model.name_or_path, cfg.cache_dir)
    model = models.model_fingerprint(model_path, cfg.model.revision)
    revision = models.resolved_revision(model_path, cfg.model.revision)
    identities = {"data": data_identity.identity(cfg.data), "model": model}
    if cfg.pretrain.enabled:
        identities["pretrain_text"] = pretrain_text_identity(cfg)
    return identities, model_path, revision


def pretrain_text_identity(cfg: PipelineConfig) -> str:
    """The content of `pretrain.text` (its files in reading order); "training texts" when it is empty: the task's
    own training split, which the validate key covers."""
    if not cfg.pretrain.text:
        return "training texts"
    from nerflow.config_pretrain import text_files
    from nerflow.stat_cache import file_sha256

    return hash_json([file_sha256(f) for f in text_files(cfg.pretrain.text)])


def setting(cfg: PipelineConfig, path: str) -> Any:
    """The key settings of a config section (or the value of a key) a stage reads, e.g. "train" or "seed"."""
    node: Any = cfg
    for part in path.split("."):
        node = getattr(node, part)
    return key_settings(node) if hasattr(node, "model_fields") else json.loads(json.dumps(node, default=str))


def make_plan(cfg: PipelineConfig, force_from: str | None = None, graph: Graph | None = None) -> Plan:
    """Keys of every stage of `graph` (default: the pipeline, nerflow.graph.PIPELINE); `force_from` marks that
    stage and every stage downstream of it as to-compute."""
    graph = (graph or stage_graph.PIPELINE).active(cfg)
    identities, model_path, revision = input_identities(cfg)
    keys: dict[str, str] = {}
    parts: dict[str, dict] = {}
    for stage in graph.stages:
        parts[stage.name] = stage_parts(stage, cfg, identities, keys, graph)
        keys[stage.name] = cache.stage_key(stage.name, parts[stage.name])
    forced = graph.downstream(force_from) if force_from else set()
    stages = {}
    for stage in graph.stages:
        name = stage.name
        found = cache.lookup(cfg.cache_dir, name, keys[name])
        stages[name] = StagePlan(name, keys[name], parts[name], Path(cfg.cache_dir) / name / keys[name],
                                 found is not None and name not in forced, name in forced)
    logical_run = hash_json({s: keys[s] for s in graph.sinks()})[:24]
    return Plan(graph, stages, identities, model_path, revision, logical_run)


def stage_parts(stage: Stage, cfg: PipelineConfig, identities: dict, keys: dict[str, str], graph: Graph) -> dict:
    return {**{c: keys[c] for c in stage.consumes},
            **{name: identities[name] for name in stage.inputs},
            "settings": {path: setting(cfg, path) for path in stage.reads},
            "code": code_identity.stage_code(stage, cfg.task, graph)}


def describe(plan: Plan, root: Path) -> list[str]:
    """One line per stage, in the graph's order: reuse or compute, and why (`--dry-run`, and what the rerun flow
    says before it starts)."""
    return [f"{stage:<9} {explain(plan.stages[stage], root)}" for stage in plan.graph.names]


def explain(step: StagePlan, root: Path) -> str:
    """Why a stage computes: which part of its key differs from the newest complete output of that stage."""
    if step.complete:
        return "reuse: inputs, settings and code unchanged"
    if step.forced:
        return "compute: forced"
    previous = newest_manifest(root, step.stage)
    if previous is None:
        return "compute: no earlier output of this stage"
    if previous.get("key") == step.key:
        return "compute: output missing or incomplete"
    old = previous.get("parts", {})
    detail = [_what_changed(name, old.get(name), step.parts.get(name)) for name in sorted(set(old) | set(step.parts))
              if hash_json(old.get(name)) != hash_json(step.parts.get(name))]
    return "compute: changed " + ", ".join(detail) if detail else "compute: output missing or incomplete"


def _what_changed(name: str, old: Any, new: Any) -> str:
    """`settings (train.lr)`, `code (nerflow/train.py)`, or just the part's name."""
    if name == "settings" and isinstance(old, dict) and isinstance(new, dict):
        return f"settings ({', '.join(_changed_leaves(old, new)) or 'layout'})"
    if name == "code" and isinstance(old, dict) and isinstance(new, dict):
        changed = _changed_leaves(old.get("modules", {}), new.get("modules", {})) + \
            _changed_leaves(old.get("libraries", {}), new.get("libraries", {}))
        return f"code ({', '.join(changed[:4])}{', ...' if len(changed) > 4 else ''})"
    return name


def _changed_leaves(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_leaves(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def newest_manifest(root: Path, stage: str) -> dict | None:
    manifests = sorted(cache.manifests(Path(root), stage), key=lambda p: p.stat().st_mtime)
    for path in reversed(manifests):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None
