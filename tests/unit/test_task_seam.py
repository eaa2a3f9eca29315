"""The task-type seam: outside the two task packages nothing imports a task module or names a task type (src/,
tasks/ and flows/ are scanned), each task implements every entry the stage graph needs, the `ner` alias and old
resolved configs still load, and versions registered before task types still unpickle."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from nerflow import code_identity, task_types
from nerflow.config import load_config
from nerflow.graph import PIPELINE

ROOTS = code_identity.package_roots()          # src/nerflow, tasks/ (nerflow.prefect_tasks), flows/ (nerflow.flows)
TASK_PACKAGES = tuple(m.rpartition(".")[0] for m in task_types.IMPLEMENTATIONS.values())   # nerflow.ner, ...
TASK_NAMES = {*task_types.IMPLEMENTATIONS, *task_types.ALIASES}
FIXTURES = Path(__file__).parent / "fixtures"


def shared_modules() -> list[tuple[str, Path]]:
    index = code_identity.SourceIndex(ROOTS)
    return sorted((name, path) for name, (path, _) in index.files.items()
                  if not name.startswith(tuple(f"{p}." for p in TASK_PACKAGES)) and name not in TASK_PACKAGES)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_scan_covers_src_tasks_and_flows():
    names = [name for name, _ in shared_modules()]
    assert {"nerflow.plan", "nerflow.prefect_tasks.stage", "nerflow.flows.cli", "nerflow.flows.commands.run"} <= \
        set(names)
    assert not any(name.startswith(TASK_PACKAGES) for name in names)


@pytest.mark.parametrize("name,path", shared_modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_shared_modules_import_no_task_module(name, path):
    bad = sorted(m for m in imported_modules(path) if m.startswith(TASK_PACKAGES))
    assert bad == [], f"{path} imports task modules: {bad}"


@pytest.mark.parametrize("name,path", shared_modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_shared_modules_name_no_task_type(name, path):
    """No branch on a task name: only the seam (nerflow.task_types) holds the names, as its table."""
    if name == "nerflow.task_types":
        return
    named = sorted({node.value for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Constant) and node.value in TASK_NAMES})
    assert named == [], f"{path} names task types {named}: ask the seam (nerflow.task_types)"


@pytest.mark.parametrize("package,other", [("ner", "nerflow.textcat"), ("textcat", "nerflow.ner")])
def test_a_task_never_imports_the_other_one(package, other):
    for path in (ROOTS["nerflow"] / package).glob("*.py"):
        assert not [m for m in imported_modules(path) if m.startswith(other)], path


ENTRY_FUNCTIONS = {"validate": ("load_corpus", "validate_corpus", "write_validated"),
                   "tokenize": ("tokenize_validated",), "train": ("job_fields", "train_job"),
                   "evaluate": ("evaluate_model",), "register": ("servable",),
                   "promote": ("examples", "gold", "load_scorer", "gate_tables", "hits", "gold_count"),
                   "predict": ("load_predictor",), "explain": ("load_explainer",)}


@pytest.mark.parametrize("name", sorted(task_types.IMPLEMENTATIONS))
def test_every_task_implements_the_interface(name):
    kind = task_types.get(name)
    assert kind.name == name and kind.config.model_fields["task"].default == name
    missing = [m for m in task_types.TaskType.__annotations__ if not hasattr(kind, m)] + \
              [m for m, v in vars(task_types.TaskType).items() if callable(v) and not m.startswith("_")
               and not hasattr(kind, m)]
    assert missing == [], f"{name} lacks {missing}"
    assert {s.entry for s in PIPELINE.stages} <= set(kind.entries)
    for point, functions in ENTRY_FUNCTIONS.items():
        module = importlib.import_module(kind.entries[point])
        assert [f for f in functions if not callable(getattr(module, f, None))] == [], (name, point)
        assert module.__name__.startswith(task_types.IMPLEMENTATIONS[name].rpartition(".")[0])


def test_ner_is_an_alias_and_configs_without_a_task_read_as_token_classification(tmp_path):
    (tmp_path / "a.yaml").write_text("task: ner\n")
    (tmp_path / "b.yaml").write_text("seed: 3\n")                 # what every config was before task types
    assert load_config(tmp_path / "a.yaml").task == load_config(tmp_path / "b.yaml").task == "token-classification"
