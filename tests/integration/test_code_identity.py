"""A stage's key covers exactly the code it runs: for every module under src/nerflow, editing it (in a copy of the
package) changes the code identity of exactly the stages that execute it, and the keys of those stages and every
stage downstream of them. "Execute" is measured, not taken from the analyser under test: each stage of both task
types runs once in a fresh process (tests/integration/stage_probe.py) and records the nerflow modules it imported."""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nerflow import code_identity
from nerflow.graph import PIPELINE
from nerflow.plan import make_plan

PROBE = Path(__file__).with_name("stage_probe.py")


def probe_context(cfg, cache_copy: Path, name: str):
    """A RunContext that forces every stage of `cfg`, in a copy of its stage cache and a model name of its own, with
    an MLflow run to log into: what the probe's children run."""
    from nerflow.prefect_tasks import tracking
    from nerflow.prefect_tasks.stage import RunContext

    cfg = cfg.model_copy(update={
        "cache_dir": cache_copy, "experiment": "nerflow-code-identity",
        "registry": cfg.registry.model_copy(update={"model_name": f"code-identity-{name}"}),
        "train": cfg.train.model_copy(update={"epochs": 1})})
    plan = make_plan(cfg, force_from=PIPELINE.names[0])
    client = tracking.configure()
    run_id = tracking.open_run(client, cfg, plan.logical_run, None)
    return RunContext(cfg, plan, run_id)


@pytest.fixture(scope="module")
def executed(pipeline_result, textcat_run, tmp_path_factory) -> dict[str, dict[str, set[str]]]:
    """{task: {stage: nerflow modules the stage imported when it ran}}."""
    jobs_dir = tmp_path_factory.mktemp("stage-probe")
    jobs = []
    for name, (cfg, _) in (("ner", pipeline_result), ("textcat", textcat_run)):
        cache_copy = jobs_dir / f"{name}-cache"
        shutil.copytree(cfg.cache_dir, cache_copy, symlinks=True, ignore=shutil.ignore_patterns("locks"))
        (jobs_dir / f"{name}.pkl").write_bytes(pickle.dumps(probe_context(cfg, cache_copy, name)))
        jobs.append({"name": name, "context": f"{name}.pkl", "stages": list(PIPELINE.names), "task": cfg.task})
    (jobs_dir / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([sys.executable, str(PROBE), str(jobs_dir)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    return {job["task"]: {stage: set(json.loads((jobs_dir / f"{job['name']}-{stage}.json").read_text()))
                          for stage in job["stages"]} for job in jobs}


def library_modules(root: Path) -> dict[str, Path]:
    """Every module under src/nerflow, by name."""
    index = code_identity.SourceIndex({"nerflow": root})
    return {name: path for name, (path, _) in index.files.items()}


def test_the_probe_measured_every_stage_of_both_task_types(executed):
    assert set(executed) == {"token-classification", "text-classification"}
    for stages in executed.values():
        assert set(stages) == set(PIPELINE.names)
        assert all("nerflow.prefect_tasks.stage" in modules for modules in stages.values())
    ner, textcat = executed["token-classification"], executed["text-classification"]
    assert "nerflow.ner.training" in ner["train"] and "nerflow.ner.training" not in ner["validate"]
    assert not any(m.startswith("nerflow.textcat") for modules in ner.values() for m in modules)
    assert not any(m.startswith("nerflow.ner.") for modules in textcat.values() for m in modules)


def test_editing_any_module_changes_exactly_the_keys_of_the_stages_that_run_it(executed, pipeline_result,
                                                                              textcat_run, tmp_path, monkeypatch):
    """One row per (module, task type): the stages whose code identity changed must be the stages that imported
    the module, and the stages whose key changed those and every stage downstream of them."""
    from nerflow import plan as planning

    configs = {pipeline_result[0].task: pipeline_result[0], textcat_run[0].task: textcat_run[0]}
    inputs = {id(cfg): planning.input_identities(cfg) for cfg in configs.values()}   # the data and model: no code
    monkeypatch.setattr(planning, "input_identities", lambda cfg: inputs[id(cfg)])
    real = code_identity.package_roots()
    copy = tmp_path / "nerflow"
    shutil.copytree(real["nerflow"], copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code_identity, "package_roots", lambda: {**real, "nerflow": copy})

    def identities() -> dict[str, dict[str, tuple[str, str]]]:
        out = {}
        for task, cfg in configs.items():
            plan = planning.make_plan(cfg)
            out[task] = {s: (p.key, json.dumps(p.parts["code"], sort_keys=True)) for s, p in plan.stages.items()}
        return out

    before = identities()
    modules = library_modules(copy)
    assert len(modules) > 40 and "nerflow.ner.synthetic" in modules and "nerflow.textcat.evaluation" in modules
    wrong = []
    for name, path in sorted(modules.items()):
        original = path.read_bytes()
        path.write_bytes(original + b"\n_edited = True   # tests/integration/test_code_identity.py\n")
        try:
            after = identities()
        finally:
            path.write_bytes(original)
        for task, stages in executed.items():
            runs_it = {s for s, imported in stages.items() if name in imported}
            code_changed = {s for s in PIPELINE.names if before[task][s][1] != after[task][s][1]}
            key_changed = {s for s in PIPELINE.names if before[task][s][0] != after[task][s][0]}
            downstream = set().union(*(PIPELINE.downstream(s) for s in runs_it)) if runs_it else set()
            if code_changed != runs_it or key_changed != downstream:
                wrong.append(f"{name} [{task}]: run by {sorted(runs_it)}, code identity changed for "
                             f"{sorted(code_changed)}, keys changed for {sorted(key_changed)}")
    assert identities() == before                       # every edit was undone
    assert wrong == [], "\n".join(wrong)
