"""A stage declared outside nerflow's own graph, for tests: adding a stage is one declaration (`COUNT`), one library
function (`count_examples`) and one adapter (this module's `compute` and `record`); the plan, `--dry-run`,
`rerun --from` and the flow handle it with no other change (tests/unit/test_graph.py,
tests/integration/test_pipeline.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nerflow.graph import PIPELINE, Stage
from nerflow.outputs import StageOutput, write_fields


@dataclass(frozen=True)
class Counted(StageOutput):
    examples: dict[str, int] = field(default_factory=dict)

    def summary_lines(self, kind) -> list[str]:
        return [f"counted:    {sum(self.examples.values())} {kind.unit}"]


def count_examples(validated: Path) -> dict[str, int]:
    """The library function: examples per canonical split."""
    return {split: sum(1 for line in (validated / f"{split}.jsonl").open() if line.strip())
            for split in ("train", "validation", "test")}


def compute(ctx, step, upstream, out: Path) -> None:
    write_fields(out, {"examples": count_examples(Path(upstream["validate"].path))})


def record(ctx, step, upstream, output: Counted) -> Counted:
    return output


COUNT = Stage("count", consumes=("validate",), reads=("seed",), output=Counted,
              compute="tests.unit.toy_stage:count_examples", adapter="tests.unit.toy_stage",
              about="examples per split (a toy stage for the tests)")
GRAPH = PIPELINE.with_stage(COUNT)
