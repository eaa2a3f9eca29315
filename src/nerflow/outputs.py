"""The typed output of each stage: what the next stages, the run summary and the "already done" answer read.

A stage's adapter (tasks/) computes into its cache entry and writes the output's own fields there as `output.json`;
`load` rebuilds the output from an entry (a reused stage, `nerflow run` with nothing to do), `from_json` from the
copy a finished run logs to MLflow (`pipeline/outputs.json`, read on another host). `summary_lines` is the stage's
part of the summary `nerflow run` prints: the summary is the stages' parts in the graph's order.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

OUTPUT_FILE = "output.json"


@dataclass(frozen=True)
class StageOutput:
    stage: str
    key: str
    path: str             # the entry this attempt used (a generation folder of the stage cache)
    reused: bool          # True: computed earlier (same inputs, settings and code), not by this attempt

    BASE: ClassVar[tuple[str, ...]] = ("stage", "key", "path", "reused")

    def fields(self) -> dict[str, Any]:
        """The stage's own fields (what `output.json` holds)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.BASE}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any], **changes) -> StageOutput:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in value.items() if k in known}, **changes})

    @classmethod
    def load(cls, stage: str, key: str, entry: Path, reused: bool = True) -> StageOutput:
        fields_ = json.loads((Path(entry) / OUTPUT_FILE).read_text())
        return cls.from_json({**fields_, "stage": stage, "key": key, "path": str(entry), "reused": reused})

    def summary_lines(self, kind) -> list[str]:
        """This stage's lines of the run summary (`kind`: the run's task type)."""
        return []


def write_fields(entry: Path, fields_: dict[str, Any]) -> None:
    (Path(entry) / OUTPUT_FILE).write_text(json.dumps(fields_, indent=1, default=str))


@dataclass(frozen=True)
class Validated(StageOutput):
    data_hash: str = ""                                   # one hash of the data identity (roles and content)
    data: dict[str, str] = field(default_factory=dict)    # the data identity: per role, its content hash
    sizes: dict[str, int] = field(default_factory=dict)   # examples per split


@dataclass(frozen=True)
class Tokenized(StageOutput):
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Pretrained(StageOutput):
    model_dir: str = ""                                        # a Hugging Face folder: what train starts from
    summary: dict[str, Any] = field(default_factory=dict)      # steps, tokens seen, time, texts removed

    @classmethod
    def load(cls, stage: str, key: str, entry: Path, reused: bool = True) -> StageOutput:
        out = super().load(stage, key, entry, reused)
        return dataclasses.replace(out, model_dir=str(Path(entry) / "model"))


ADAPTER_ARTIFACT = "adapter"   # a LoRA run's artifact: the adapter with its head (peft's folder), beside the model


@dataclass(frozen=True)
class Trained(StageOutput):
    model_dir: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    adapter_dir: str = ""      # train.adapter: lora: the adapter with its head (peft's folder), else ""

    @classmethod
    def load(cls, stage: str, key: str, entry: Path, reused: bool = True) -> StageOutput:
        out = super().load(stage, key, entry, reused)
        adapter = Path(entry) / ADAPTER_ARTIFACT
        return dataclasses.replace(out, model_dir=str(Path(entry) / "model"),   # where this entry holds them
                                   adapter_dir=str(adapter) if adapter.is_dir() else "")


@dataclass(frozen=True)
class Evaluated(StageOutput):
    metrics: dict[str, float] = field(default_factory=dict)

    def summary_lines(self, kind) -> list[str]:
        m = self.metrics
        # entity types or classes from the per-class support keys (`test/f1_` also starts `test/f1_macro`);
        # docs/metrics.md
        classes = sorted(k.removeprefix("test/support_") for k in m if k.startswith("test/support_"))
        width = max([len(c) for c in classes] + [8])
        lines = [f"{kind.class_column:<{width}}  {'val F1':>7}  {'test F1':>7}"]
        for c in classes:
            lines.append(f"{c:<{width}}  {m.get(f'val/best_f1_{c}', 0):>7.4f}  {m[f'test/f1_{c}']:>7.4f}")
        lines.append(f"{'overall':<{width}}  {m['val/best_f1']:>7.4f}  {m['test/f1']:>7.4f}  "
                     f"({kind.headline.split()[0]})")
        if "test/accuracy" in m:
            lines.append(f"{'accuracy':<{width}}  {m.get('val/best_accuracy', float('nan')):>7.4f}  "
                         f"{m['test/accuracy']:>7.4f}")
        return lines


@dataclass(frozen=True)
class Distilled(StageOutput):
    """The distill stage's student (nerflow.distill): a Hugging Face model folder with fewer encoder layers."""

    model_dir: str = ""
    summary: dict[str, Any] = field(default_factory=dict)   # layers kept, validation score, steps, time

    @classmethod
    def load(cls, stage: str, key: str, entry: Path, reused: bool = True) -> StageOutput:
        out = super().load(stage, key, entry, reused)
        return dataclasses.replace(out, model_dir=str(Path(entry) / "model"))

    def summary_lines(self, kind) -> list[str]:
        s = self.summary
        return [f"distilled:  {s.get('layers', '?')} of {s.get('teacher_layers', '?')} layers (kept "
                f"{s.get('kept', [])}), validation score {s.get('best_score', 0):.4f} against the "
                f"fine-tuned model's {s.get('teacher_score', 0):.4f}, epoch {s.get('best_epoch', 0)}"]


SERVED_DIR = "served"   # an export entry's folder registration logs: the weights, runtime.json, the chosen ONNX file


@dataclass(frozen=True)
class Exported(StageOutput):
    runtime: str = ""          # what serves the version: torch | torch-bf16 | onnx | onnx-int8 |
    #                            onnx-int8-distilled (nerflow.runtimes)
    reason: str = ""           # why, in words (the validation F1 comparison)
    unit: str = ""             # what throughput counts: words (NER) or texts
    max_f1_drop: float = 0.0
    rows: dict[str, dict[str, float]] = field(default_factory=dict)   # per runtime: F1s, size, speed
    served_dir: str = ""

    @classmethod
    def load(cls, stage: str, key: str, entry: Path, reused: bool = True) -> StageOutput:
        out = super().load(stage, key, entry, reused)
        return dataclasses.replace(out, served_dir=str(Path(entry) / SERVED_DIR))

    def summary_lines(self, kind) -> list[str]:
        row = self.rows.get(self.runtime, {})
        return [f"served by:  {self.runtime} ({row.get('mb', 0):.1f} MB, p50 {row.get('p50_ms', 0):.1f} ms): "
                f"{self.reason}"]

    def card_lines(self) -> list[str]:
        """The model card's section on serving (tasks/promote.py)."""
        return ["## Serving", "", f"Served by **{self.runtime}**: {self.reason}.", "",
                *runtime_table(self.runtime, self.unit, self.rows), ""]


@dataclass(frozen=True)
class Referenced(StageOutput):
    """The drift reference (nerflow.drift_profile): `reference` and `holdout` profiles of the validation split."""

    texts: int = 0             # in the reference
    holdout: int = 0           # in the hold-out (the rest of the validation documents)
    documents: int = 0
    bandwidth: float = 0.0     # the embedding test's kernel bandwidth, from the reference
    training: int = 0          # training texts whose input descriptors calibrate with the hold-out

    def summary_lines(self, kind) -> list[str]:
        return [f"drift reference: {self.texts} validation {kind.unit} ({self.holdout} held out; descriptors of "
                f"{self.training} training {kind.unit}), logged with the version for `nerflow drift`"]


def runtime_table(served: str, unit: str, rows: dict[str, dict[str, float]]) -> list[str]:
    """The export stage's rows as a Markdown table, the served runtime marked (the model card, export.md)."""
    lines = [f"| runtime | val F1 | test F1 | MB | {unit}/s (batch) | p50 ms | p99 ms |",
             "|---|---|---|---|---|---|---|"]
    for rt, r in rows.items():
        mark = " (served)" if rt == served else ""
        lines.append(f"| {rt}{mark} | {r['val_f1']:.4f} | {r['test_f1']:.4f} | {r['mb']:.1f} | "
                     f"{r[f'{unit}_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    return lines


@dataclass(frozen=True)
class Registered(StageOutput):
    model_name: str = ""
    version: int = 0
    alias: str = ""
    registered_by_run: str = ""
    new_version: bool = False   # this attempt created the version (False: reused, or equal weights found)
    registry: str = ""          # where the version is: the tracking URI, normalised (tracking.registry_id); ""
    #                             in an output written before outputs named it
    version_key: str = ""       # the version's `nerflow.register_key`: this stage's key, or for a version reused
    #                             for identical weights, that version's

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"

    def summary_lines(self, kind) -> list[str]:
        if self.reused:
            said = (f"already registered: {self.model_name} version {self.version} by run {self.registered_by_run}; "
                    "nothing new (use --force-register for a new version)")
        elif not self.new_version:
            said = (f"weights identical to {self.model_name} version {self.version}: no new version registered "
                    "(use --force-register for one)")
        else:
            said = f"registered: {self.model_name} version {self.version} (alias @{self.alias})"
        return ["", said, f"load it:    mlflow.pyfunc.load_model('{self.uri}')"]


@dataclass(frozen=True)
class Promoted(StageOutput):
    decision: dict[str, Any] = field(default_factory=dict)   # nerflow.promotion.decision_json + version, alias, moved

    def summary_lines(self, kind) -> list[str]:
        d = self.decision
        if not d:
            return []
        if d.get("awaiting_approval"):
            from nerflow.promotion import approval_hint

            return [f"promotion:  awaiting approval for @{d['alias']}: "
                    f"{approval_hint(d['model_name'], d['version'])}; the gate accepted it: {d['reason']}"]
        if d.get("handed_to"):
            return [f"promotion:  accepted for @{d['alias']}, handed to {d['handed_to']} (flow run "
                    f"{d.get('promote_flow_run')}): the promoter's worker moves it: {d['reason']}"]
        held = "" if d["moved"] or not d["accepted"] else " (promote.auto is false: not moved)"
        return [f"promotion:  {d['decision']} for @{d['alias']}{held}: {d['reason']}"]


@dataclass(frozen=True)
class RunResult:
    """What one pipeline attempt produced: every stage's output, in the graph's order."""

    run_id: str
    outputs: dict[str, StageOutput]
    flow_run_id: str = ""
    already_done: bool = False   # nothing ran: the answer came from the stage cache or the registry

    def __getitem__(self, stage: str) -> StageOutput:
        return self.outputs[stage]

    @property
    def stages(self) -> dict[str, bool]:
        """Per stage: reused (True) or computed by this attempt."""
        return {name: out.reused for name, out in self.outputs.items()}

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "flow_run_id": self.flow_run_id,
                "outputs": {name: out.to_json() for name, out in self.outputs.items()}}

    @classmethod
    def from_json(cls, value: dict[str, Any], graph, reused: bool = True, **changes) -> RunResult:
        """A result logged by a finished run (`pipeline/outputs.json`), its stages as reused by default."""
        outputs = {s.name: s.output.from_json(value["outputs"][s.name], reused=reused) for s in graph.stages}
        return cls(**{"run_id": value["run_id"], "flow_run_id": value.get("flow_run_id", ""), "outputs": outputs,
                      **changes})
