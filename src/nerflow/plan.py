"""What a pipeline run will do, decided from content hashes before anything heavy is imported.

Each stage's key hashes exactly what determines its output (see docs/caching.md):

    validate  = data content + data settings (not file names or places) + code
    tokenize  = validate key + tokenizer files + tokenize settings + code
    train     = tokenize key + base model files + train settings + seed + code
    evaluate  = train key + validate key + tokenize key + evaluate settings + code
    register  = evaluate key + registry settings + code
    promote   = register key + promote settings + code

"code" is the source of the nerflow modules the stage runs plus the versions of the libraries it uses, so editing
`src/nerflow/train.py` recomputes training and everything after it, and nothing before.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nerflow import cache, models, task_types
from nerflow.config import PipelineConfig, hash_json

STAGES = ("validate", "tokenize", "train", "evaluate", "register", "promote")
# shared nerflow modules and libraries each stage runs; the task type adds its own modules (nerflow.task_types)
CODE = {
    "validate": (["config", "data", "validation"], ["great-expectations", "pandas"]),
    "tokenize": (["data", "models"], ["tokenizers", "transformers", "datasets"]),
    "train": (["train", "batching", "optim", "checkpoints", "progress", "distributed", "launch", "devices"],
              ["torch", "transformers"]),
    "evaluate": (["data", "batching", "plots"], ["seqeval", "scikit-learn", "torch"]),
    "register": (["serving"], ["mlflow"]),
    "promote": (["promotion", "history", "data", "scoring"], ["mlflow", "seqeval"]),
}
# Where the files are and what they are called does not change the result; their content does.
DATA_LOCATION_KEYS = {"dir", "train", "validation", "test"}
# Settings that change how a stage reports or where its processes meet, not what it produces.
TRAIN_REPORTING_KEYS = {"log_every", "num_threads", "master_addr", "master_port"}


@dataclass(frozen=True)
class StagePlan:
    stage: str
    key: str
    parts: dict
    path: Path            # where its output lives once complete
    complete: bool        # a verified output exists: the stage will be reused
    forced: bool = False  # recomputed on request (`force_from`), whether or not an output exists


@dataclass(frozen=True)
class Plan:
    stages: dict[str, StagePlan]
    data_hash: str
    model_path: str
    model_hash: str

    @property
    def logical_run(self) -> str:
        """One id per (config, data, code): the last stage's key chains every other key."""
        return self.stages[STAGES[-1]].key

    def first_to_compute(self) -> str | None:
        return next((s for s in STAGES if not self.stages[s].complete), None)


def make_plan(cfg: PipelineConfig, force_from: str | None = None, extra_code: dict[str, list[Path]] | None = None
              ) -> Plan:
    """Keys of every stage; `force_from` marks that stage and all after it as to-compute. `extra_code`: more
    source files per stage (the orchestration layer passes each stage's task file)."""
    kind = task_types.get(cfg.task)
    data_hash = kind.data_fingerprint(cfg.data)
    model_path = models.resolve_model(cfg.model.name_or_path, cfg.cache_dir)
    model_hash = models.model_fingerprint(model_path, cfg.model.revision)
    code = {stage: cache.code_fingerprint(CODE[stage][0] + kind.modules[stage], CODE[stage][1],
                                          (extra_code or {}).get(stage, [])) for stage in STAGES}
    parts: dict[str, dict] = {}
    keys: dict[str, str] = {}

    def add(stage: str, stage_parts: dict) -> None:
        parts[stage] = {**stage_parts, "code": code[stage]}
        keys[stage] = cache.stage_key(stage, parts[stage])

    def settings(section: str, exclude=()) -> dict:
        """The section's keys this task reads (a key only the other task reads never changes this one's keys)."""
        include = kind.keys.get(section)
        dumped = getattr(cfg, section).model_dump(mode="json", exclude=set(exclude))
        return {k: v for k, v in dumped.items() if include is None or k in include}

    add("validate", {"task": cfg.task, "data": data_hash, "settings": settings("data", DATA_LOCATION_KEYS)})
    add("tokenize", {"validate": keys["validate"], "tokenizer": model_hash, "settings": settings("tokenize")})
    add("train", {"tokenize": keys["tokenize"], "model": model_hash, "seed": cfg.seed,
                  "settings": settings("train", TRAIN_REPORTING_KEYS)})
    add("evaluate", {"train": keys["train"], "validate": keys["validate"], "tokenize": keys["tokenize"],
                     "settings": settings("evaluate")})
    add("register", {"evaluate": keys["evaluate"], "settings": settings("registry")})
    # the gate's outcome also depends on the champion of the moment, which no key can hold: a rerun of a complete
    # promote stage reuses its recorded decision; `nerflow promote` asks the gate again
    add("promote", {"register": keys["register"], "settings": settings("promote")})
    forced = set(STAGES[STAGES.index(force_from):]) if force_from else set()
    stages = {}
    for stage in STAGES:
        found = cache.lookup(cfg.cache_dir, stage, keys[stage])
        stages[stage] = StagePlan(stage, keys[stage], parts[stage], Path(cfg.cache_dir) / stage / keys[stage],
                                  found is not None and stage not in forced, stage in forced)
    return Plan(stages, data_hash, model_path, model_hash)


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
    changed = [name for name in sorted(set(old) | set(step.parts)) if hash_json(old.get(name)) != hash_json(step.parts.get(name))]
    detail = []
    for name in changed:
        if name == "settings" and isinstance(old.get(name), dict):
            keys = sorted(k for k in set(old[name]) | set(step.parts[name]) if old[name].get(k) != step.parts[name].get(k))
            detail.append("settings (" + ", ".join(keys) + ")")
        else:
            detail.append(name)
    return "compute: changed " + ", ".join(detail) if detail else "compute: output missing or incomplete"


def newest_manifest(root: Path, stage: str) -> dict | None:
    manifests = sorted((Path(root) / stage).glob(f"*/{cache.MANIFEST}"), key=lambda p: p.stat().st_mtime)
    for path in reversed(manifests):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None
