"""The task-type seam: shared modules import no task module, each task's keys hold only its own settings, the
`ner` alias and old resolved configs still load, and versions registered before task types still unpickle."""
from __future__ import annotations

import ast
from pathlib import Path

import cloudpickle
import pytest

from nerflow import cache, task_types
from nerflow.config import PipelineConfig, load_config
from nerflow.plan import make_plan
from tests.unit.test_plan import config, keys, project  # noqa: F401 - the fixture, reused

SRC = Path(cache.SRC)
TASK_PACKAGES = ("nerflow.ner", "nerflow.textcat")
FIXTURES = Path(__file__).parent / "fixtures"


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("path", sorted(p for p in SRC.glob("*.py") if p.name != "serving.py"), ids=lambda p: p.name)
def test_shared_modules_import_no_task_module(path):
    """nerflow/task.py names its implementations as strings and imports them on demand; serving.py is the one
    exception (below): the alias that keeps old pickles loading."""
    bad = sorted(m for m in imported_modules(path) if m.startswith(TASK_PACKAGES))
    assert bad == [], f"{path.name} imports task modules: {bad}"


@pytest.mark.parametrize("package,other", [("ner", "nerflow.textcat"), ("textcat", "nerflow.ner")])
def test_a_task_never_imports_the_other_one(package, other):
    for path in (SRC / package).glob("*.py"):
        assert not [m for m in imported_modules(path) if m.startswith(other)], path


def test_the_old_serving_class_still_unpickles():
    """A version registered before task types pickled its pyfunc as `nerflow.serving.NerModel` (this file is the
    python_model.pkl of such a version, registered by commit 5ac44ac); it must load into today's class."""
    from nerflow.ner.serving import NerModel

    with (FIXTURES / "ner_python_model_before_task_types.pkl").open("rb") as f:
        model = cloudpickle.load(f)
    assert type(model) is NerModel and model.task == "token-classification"


def test_ner_is_an_alias_and_old_resolved_configs_read_as_token_classification(tmp_path):
    (tmp_path / "a.yaml").write_text("task: ner\n")
    assert load_config(tmp_path / "a.yaml").task == "token-classification"
    logged = PipelineConfig().model_dump(mode="json")          # what a run logged before task types
    del logged["task"]
    assert PipelineConfig.model_validate(logged).task == "token-classification"


def test_every_task_implements_the_interface():
    for name in task_types.IMPLEMENTATIONS:
        kind = task_types.get(name)
        assert kind.name == name
        missing = [m for m in task_types.TaskType.__annotations__ if not hasattr(kind, m)] + \
                  [m for m, v in vars(task_types.TaskType).items() if callable(v) and not m.startswith("_")
                   and not hasattr(kind, m)]
        assert missing == [], f"{name} lacks {missing}"
        assert set(kind.modules) == {"validate", "tokenize", "train", "evaluate", "register", "promote"}


@pytest.mark.parametrize("setting", ["data.text_column=body", "data.multi_label=true", "tokenize.long_documents=head",
                                     "tokenize.pool=max", "evaluate.calibration_bins=5"])
def test_a_text_classification_setting_never_changes_ner_keys(project, setting):  # noqa: F811
    assert keys(make_plan(config(project, setting))) == keys(make_plan(config(project)))


def test_a_ner_setting_never_changes_text_classification_keys(tmp_path):
    data = tmp_path / "data"
    for split in ("train", "valid", "test"):
        (data / split).mkdir(parents=True)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "cfg.yaml").write_text(
        f"task: text-classification\ncache_dir: {tmp_path / 'cache'}\nmodel:\n  name_or_path: {model}\n"
        f"data:\n  format: jsonl\n  dir: {data}\n  train: train.jsonl\n  validation: valid.jsonl\n"
        "  test: test.jsonl\n")
    for name in ("train", "valid", "test"):
        (data / f"{name}.jsonl").write_text('{"text": "fine", "label": "pos"}\n')
    base = keys(make_plan(load_config(tmp_path / "cfg.yaml")))
    for setting in ("data.scheme=iob1", "data.tag_column=1", "tokenize.label_all_subtokens=true",
                    "data.max_tokens=5"):
        assert keys(make_plan(load_config(tmp_path / "cfg.yaml", [setting]))) == base, setting
    assert keys(make_plan(load_config(tmp_path / "cfg.yaml", ["data.text_column=body"])))["validate"] != \
        base["validate"]
