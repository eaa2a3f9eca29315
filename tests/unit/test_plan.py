"""Stage keys: what changes which key, and what `explain` says about it. No training: a complete cache is faked by
writing an output for every planned key."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from nerflow import cache, code_identity
from nerflow.config import load_config
from nerflow.graph import PIPELINE
from nerflow.plan import explain, make_plan

STAGES = PIPELINE.names

TRAIN = ("-DOCSTART- O\n\nJohn B-PER\nSmith I-PER\nvisited O\nBerlin B-LOC\n. O\n\n"
         "Acme B-ORG\nhired O\nAnna B-PER\n. O\n")
VALID = "John B-PER\nvisited O\nParis B-LOC\n. O\n"
TEST = "Anna B-PER\nworks O\nfor O\nAcme B-ORG\n. O\n"


@pytest.fixture
def project(tmp_path) -> Path:
    """Data files, a stand-in base model folder (only its files' content matters to the plan) and a config."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text(TRAIN)
    (data / "valid.txt").write_text(VALID)
    (data / "test.txt").write_text(TEST)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\nJohn\n")
    (tmp_path / "cfg.yaml").write_text(
        f"cache_dir: {tmp_path / 'cache'}\nmodel:\n  name_or_path: {model}\n"
        f"data:\n  dir: {data}\n  train: train.txt\n  validation: valid.txt\n  test: test.txt\n")
    return tmp_path


def config(project: Path, *overrides: str):
    return load_config(project / "cfg.yaml", list(overrides))


def keys(plan) -> dict[str, str]:
    return {stage: plan.stages[stage].key for stage in STAGES}


def complete_cache(plan) -> None:
    """What a finished run leaves: a verified output under every stage's key."""
    for stage in STAGES:
        step = plan.stages[stage]
        with cache.stage_output(step.path.parent.parent, stage, step.key, step.parts) as out:
            (out / "output.txt").write_text(stage)


def changed(before: dict, after: dict) -> list[str]:
    return [stage for stage in STAGES if before[stage] != after[stage]]


def test_changing_nothing_changes_nothing(project):
    first = make_plan(config(project))
    assert [s.complete for s in first.stages.values()] == [False] * len(STAGES)
    complete_cache(first)
    again = make_plan(config(project))
    assert keys(again) == keys(first)
    assert again.first_to_compute() is None
    assert all(explain(step, project / "cache").startswith("reuse")
               for step in again.stages.values())


@pytest.mark.parametrize("override,first_changed", [
    ("evaluate.batch_size=7", "evaluate"),
    ("registry.model_name=another-ner", "register"),
    ("promote.min_delta=0.01", "promote"),   # the gate's rules: a new decision, the same model version
    ("train.lr=0.01", "train"),
    ("seed=1", "train"),
    ("tokenize.stride=8", "tokenize"),
    ("data.max_tokens=500", "validate"),
    ("train.log_every=3", None),            # reporting only: the same output
    ("cache_dir=elsewhere", None),          # where outputs live is not what they are
])
def test_a_setting_changes_its_stage_and_every_later_one(project, override, first_changed):
    before = keys(make_plan(config(project)))
    after = keys(make_plan(config(project, override)))
    expected = list(STAGES[STAGES.index(first_changed):]) if first_changed else []
    assert changed(before, after) == expected


def test_evaluation_setting_reuses_training_and_explains_why(project):
    complete_cache(make_plan(config(project)))
    plan = make_plan(config(project, "evaluate.batch_size=7"))
    assert {s: step.complete for s, step in plan.stages.items()} == {
        "validate": True, "tokenize": True, "train": True, "evaluate": False, "register": False, "promote": False}
    assert plan.first_to_compute() == "evaluate"
    root = project / "cache"
    assert "settings (evaluate.batch_size)" in explain(plan.stages["evaluate"], root)
    assert "evaluate" in explain(plan.stages["register"], root).removeprefix("compute:")
    assert explain(plan.stages["train"], root).startswith("reuse")


def test_one_byte_of_training_data_changes_every_key(project):
    first = make_plan(config(project))
    complete_cache(first)
    train = project / "data" / "train.txt"
    train.write_text(train.read_text().replace("Berlin", "Berlim"))
    plan = make_plan(config(project))
    assert changed(keys(first), keys(plan)) == list(STAGES)
    assert plan.first_to_compute() == "validate"
    assert "data" in explain(plan.stages["validate"], project / "cache").removeprefix("compute:")


def test_swapping_a_files_role_between_validation_and_test_recomputes_validate(project):
    """The same files in other roles are other data: `data.validation=null data.test=test.txt` and
    `data.validation=test.txt data.test=null` once shared a validate key, so the second run evaluated on the first
    run's test split."""
    as_test = make_plan(config(project, "data.validation=null", "data.test=test.txt"))
    complete_cache(as_test)
    as_validation = make_plan(config(project, "data.validation=test.txt", "data.test=null"))
    assert changed(keys(as_test), keys(as_validation)) == list(STAGES)
    assert as_validation.first_to_compute() == "validate"


def test_moving_and_renaming_the_data_files_changes_nothing(project):
    first = make_plan(config(project))
    complete_cache(first)
    moved = project / "moved" / "elsewhere"
    moved.mkdir(parents=True)
    for old, new in [("train.txt", "a.conll"), ("valid.txt", "b.conll"), ("test.txt", "c.conll")]:
        shutil.move(project / "data" / old, moved / new)
    plan = make_plan(config(project, f"data.dir={moved}", "data.train=a.conll", "data.validation=b.conll",
                            "data.test=c.conll"))
    assert keys(plan) == keys(first)
    assert plan.first_to_compute() is None


@pytest.fixture
def library_copy(tmp_path) -> Path:
    """A copy of src/nerflow; `fingerprint_copy` makes the plan hash it instead of the real one, so a test compares
    the real library (before) with an edited copy (after), never one library with itself."""
    copy = tmp_path / "src-copy" / "nerflow"
    shutil.copytree(code_identity.package_roots()["nerflow"], copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def fingerprint_copy(monkeypatch, copy: Path) -> None:
    roots = code_identity.package_roots()
    assert roots["nerflow"] != copy
    monkeypatch.setattr(code_identity, "package_roots", lambda: {**roots, "nerflow": copy})


def edit_a_function(module: Path) -> None:
    """Add a harmless statement at the top of the body of the module's last function (or method)."""
    source = module.read_text()
    func = max((n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)), key=lambda n: n.lineno)
    body = func.body[1:] if ast.get_docstring(func) and len(func.body) > 1 else func.body
    first = body[0]
    lines = source.splitlines(keepends=True)
    lines.insert(first.lineno - 1, " " * first.col_offset + "_edited = True\n")
    module.write_text("".join(lines))
    compile(module.read_text(), str(module), "exec")    # still valid Python


def test_a_copy_of_the_library_changes_nothing(project, library_copy, monkeypatch):
    real = make_plan(config(project))                   # under the real library
    complete_cache(real)
    fingerprint_copy(monkeypatch, library_copy)
    copied = make_plan(config(project))
    assert keys(copied) == keys(real)
    assert copied.first_to_compute() is None


@pytest.mark.parametrize("module,first_changed", [
    ("ner/validate", "validate"),
    ("ner/tokenization", "tokenize"),
    ("train", "train"),
    ("ner/serving", "register"),
    ("ner/synthetic", None),                 # no stage runs it
    ("textcat/data", None),                  # another task type's code: never in NER's keys
])
def test_editing_library_code_changes_the_stages_that_run_it(project, library_copy, monkeypatch, module,
                                                             first_changed):
    before = make_plan(config(project))                 # the real library
    complete_cache(before)
    edit_a_function(library_copy / f"{module}.py")
    real = code_identity.package_roots()["nerflow"]
    assert (library_copy / f"{module}.py").read_bytes() != (real / f"{module}.py").read_bytes()
    fingerprint_copy(monkeypatch, library_copy)
    plan = make_plan(config(project))
    expected = list(STAGES[STAGES.index(first_changed):]) if first_changed else []
    assert changed(keys(before), keys(plan)) == expected
    assert plan.first_to_compute() == first_changed
    if first_changed:
        assert "code" in explain(plan.stages[first_changed], project / "cache").removeprefix("compute:")


def test_force_from_recomputes_that_stage_and_later_with_the_same_keys(project):
    first = make_plan(config(project))
    complete_cache(first)
    forced = make_plan(config(project), force_from="train")
    assert keys(forced) == keys(first)
    assert {s: step.complete for s, step in forced.stages.items()} == {
        "validate": True, "tokenize": True, "train": False, "evaluate": False, "register": False, "promote": False}
    assert forced.first_to_compute() == "train"
    assert explain(forced.stages["train"], project / "cache") == "compute: forced"
    assert make_plan(config(project)).first_to_compute() is None      # forcing deleted nothing


def test_a_damaged_output_is_recomputed_and_not_called_forced(project):
    first = make_plan(config(project))
    complete_cache(first)
    (first.stages["train"].path / "output.txt").write_text("truncat")
    plan = make_plan(config(project))
    assert keys(plan) == keys(first)
    assert [s for s, step in plan.stages.items() if not step.complete] == ["train"]
    assert explain(plan.stages["train"], project / "cache") == "compute: output missing or incomplete"


def test_missing_data_file_is_reported_by_name(project):
    from nerflow.data import DataError

    (project / "data" / "valid.txt").unlink()
    with pytest.raises(DataError, match="valid.txt: file not found"):
        make_plan(config(project))
