"""The pipeline as a declared stage graph: every stage is declared once, here, and everything else is derived from
the declaration: the plan and its keys (nerflow.plan), the code each key hashes (nerflow.code_identity),
`--dry-run`, `rerun --from`, the Prefect flow body (flows/pipeline.py runs the stages in this order through their
adapters), the run summary and the "already done" answer (nerflow.outputs), and `nerflow runs`.

A stage's key hashes: the keys of the stages it consumes, the identities of the outside inputs it reads (the data
by role and content, the base model by content or commit), the config settings it reads (every key of those
sections but the ones marked `NotInKey`), and its code (the nerflow modules its adapter and library function import,
found from the source, and the versions of the libraries those import).

Adding a stage is one declaration below, one library function (in each task package, as an entry of the task type,
or one shared "module:function") and one adapter module in tasks/ with `compute` and `record` (docs/caching.md,
"Adding a stage").
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nerflow.outputs import (
    Distilled,
    Evaluated,
    Exported,
    Pretrained,
    Promoted,
    Referenced,
    Registered,
    StageOutput,
    Tokenized,
    Trained,
    Validated,
)

ADAPTERS = "nerflow.prefect_tasks"


@dataclass(frozen=True)
class Stage:
    name: str
    consumes: tuple[str, ...]          # stages whose outputs it reads: their keys enter its key
    reads: tuple[str, ...]             # config keys or sections whose settings enter its key
    output: type[StageOutput]
    inputs: tuple[str, ...] = ()       # outside inputs whose identity enters its key: "data", "model"
    compute: str | None = None         # the task type's entry that computes it (default: the stage name), or a
    #                                    shared "module:function"
    adapter: str | None = None         # the tasks/ module that runs and records it (default: tasks/<name>.py)
    about: str = ""                    # one line for the docs and `nerflow run --help`
    when: str | None = None            # a boolean config key (e.g. "pretrain.enabled"): off, the stage is absent
    #                                    from the plan and its consumers' keys are those of a graph without it
    external: bool = False             # its output names something outside the cache that can vanish (a model
    #                                    version): its adapter's `still_valid` is asked before the entry is trusted

    @property
    def adapter_module(self) -> str:
        return self.adapter or f"{ADAPTERS}.{self.name}"

    @property
    def entry(self) -> str:
        """The name of the task type's entry point that computes this stage, or a shared "module:function"."""
        return self.compute or self.name


@dataclass(frozen=True)
class Graph:
    stages: tuple[Stage, ...]          # in an order where every stage comes after the stages it consumes
    # stages a config turns on (`Stage.when`); `active(cfg)` puts those that are on before their first consumer.
    # `stages` (and `names`) are what a config with all of them off runs: today's pipeline, today's keys.
    optional: tuple[Stage, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        optional = {s.name for s in self.optional}
        if any(not s.when for s in self.optional):
            raise ValueError("an optional stage needs `when`, the config key that turns it on")
        names = [s.name for s in self.stages]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice:
            raise ValueError(f"stage {twice!r} is declared twice")
        for stage in self.stages:
            unknown = [c for c in stage.consumes if c not in seen | optional]
            if unknown:
                raise ValueError(f"stage {stage.name!r} consumes {', '.join(unknown)}, not declared before it")
            seen.add(stage.name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def all_names(self) -> tuple[str, ...]:
        """Every stage a run can have, in run order: each optional stage where it runs when on (`rerun --from`'s
        choices)."""
        return self.run_names(lambda _key: True)

    def run_names(self, is_on: Callable[[str], bool]) -> tuple[str, ...]:
        """The stages of a run whose optional stages are on where `is_on(stage.when)`; a logged run answers from
        its params, the flattened config (`logged_on`)."""
        names: list[str] = []
        for stage in self.stages:
            for extra in self._before(stage, [s for s in self.optional if is_on(s.when)]):
                if extra.name not in names:
                    names.append(extra.name)
            names.append(stage.name)
        return tuple(names)

    def _before(self, stage: Stage, on: list[Stage]) -> list[Stage]:
        """The optional stages of `on` that run before `stage`: those it consumes, each after the ones it consumes
        itself (export reads distill's student; reference reads export's served folder)."""
        out: list[Stage] = []

        def place(extra: Stage) -> None:
            for dep in on:
                if dep.name in extra.consumes and dep not in out:
                    place(dep)
            if extra not in out:
                out.append(extra)

        for extra in on:
            if extra.name in stage.consumes:
                place(extra)
        return out

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r} (stages: {', '.join(self.names)})")

    def downstream(self, name: str) -> set[str]:
        """`name` and every stage that consumes it, directly or through others: what forcing `name` recomputes."""
        out = {self.stage(name).name}
        for s in self.stages:
            if out & set(s.consumes):
                out.add(s.name)
        return out

    def sinks(self) -> tuple[str, ...]:
        """The stages no other stage consumes: their keys together name a logical run."""
        consumed = {c for s in self.stages for c in s.consumes}
        return tuple(s.name for s in self.stages if s.name not in consumed)

    def active(self, cfg) -> Graph:
        """The graph `cfg` runs: each optional stage that is on, before the first stage that consumes it; every
        mention of one that is off dropped from the consumes of the others (their keys are then exactly those of
        a graph that never declared it)."""
        from dataclasses import replace

        from nerflow.plan import setting

        on = [s for s in self.optional if setting(cfg, s.when)]
        off = {s.name for s in self.optional} - {s.name for s in on}
        stages: list[Stage] = []
        for stage in self.stages:
            for extra in self._before(stage, on):
                if extra.name not in {s.name for s in stages}:
                    stages.append(replace(extra, consumes=tuple(c for c in extra.consumes if c not in off)))
            stages.append(replace(stage, consumes=tuple(c for c in stage.consumes if c not in off)))
        placed = {s.name for s in stages}
        return Graph(tuple(stages), tuple(s for s in self.optional if s.name not in placed))

    def with_stage(self, stage: Stage) -> Graph:
        return Graph((*self.stages, stage), self.optional)


def logged_on(params: Mapping[str, str]) -> Callable[[str], bool]:
    """Whether a config key was on in a logged run (its params are the flattened config, booleans as "True")."""
    return lambda key: str(params.get(key, "")).lower() == "true"


def named(reference: str) -> Graph:
    """The graph a "module:name" reference names (a flow parameter holds a reference, not the object)."""
    import importlib

    module, _, name = reference.partition(":")
    graph = getattr(importlib.import_module(module), name or "PIPELINE")
    if not isinstance(graph, Graph):
        raise TypeError(f"{reference} is not a stage graph")
    return graph


PIPELINE = Graph((
    Stage("validate", consumes=(), reads=("task", "data"), inputs=("data",), output=Validated,
          about="read the data and check it (Great Expectations); canonical splits"),
    Stage("tokenize", consumes=("validate",), reads=("tokenize",), inputs=("model",), output=Tokenized,
          about="the splits as model inputs (the base model's tokenizer)"),
    Stage("train", consumes=("validate", "tokenize", "pretrain"), reads=("train", "seed"), inputs=("model",),
          output=Trained,
          about="fine-tune the base model; the best weights on validation"),
    Stage("evaluate", consumes=("validate", "tokenize", "train"), reads=("evaluate",), output=Evaluated,
          about="scores on validation and test, reports and plots"),
    Stage("register", consumes=("validate", "train", "evaluate", "export", "reference"), reads=("registry",),
          output=Registered,
          external=True, about="a version in the MLflow registry, alias registry.alias"),
    # the gate's outcome also depends on the champion of the moment, which no key can hold: a rerun of a complete
    # promote stage reuses its recorded decision; `nerflow promote` asks the gate again
    Stage("promote", consumes=("validate", "evaluate", "export", "register"), reads=("promote",), output=Promoted,
          about="the evidence gate for promote.alias (champion)"),
), optional=(
    # off by default (pretrain.enabled): then absent, and train's key is what it was before this stage existed
    Stage("pretrain", consumes=("validate",), reads=("pretrain", "seed", "train.precision", "train.num_threads"),
          inputs=("model", "pretrain_text"), output=Pretrained, compute="nerflow.pretrain:pretrain_stage",
          when="pretrain.enabled", about="continued masked-LM pretraining of the base model on unlabelled text"),
    # off by default (distill.enabled): a student with fewer layers, trained by the task's own training code
    # (hence `compute="train"`) from the fine-tuned model; export offers its int8 ONNX as one more runtime
    Stage("distill", consumes=("validate", "tokenize", "train"), reads=("distill", "train", "seed"),
          output=Distilled, compute="train", when="distill.enabled",
          about="a student with fewer encoder layers, distilled from the fine-tuned model (faster to serve)"),
    # on in the shipped configs (export.enabled); off, register serves the PyTorch weights with the keys of before
    Stage("export", consumes=("validate", "tokenize", "train", "evaluate", "distill"), reads=("export", "evaluate"),
          output=Exported, when="export.enabled",
          about="ONNX fp32 and int8, each scored and timed; the served runtime chosen on validation F1"),
    # on in the shipped configs (monitor.reference); off, `nerflow drift` computes it at a version's first check
    Stage("reference", consumes=("validate", "train", "export"),
          reads=("monitor.reference_share", "monitor.max_reference", "monitor.max_training_texts", "seed"),
          output=Referenced,
          when="monitor.reference",
          about="the drift reference: the validation split profiled by the model as it will be served"),
))
