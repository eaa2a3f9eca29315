"""A stage's key covers exactly the code it runs: for every module under src/nerflow, editing it (in a copy of the
package) changes the code identity of exactly the stages that execute it, and the keys of those stages and every
stage downstream of them. "Execute" is measured, not taken from the analyser under test: each stage of both task
types runs once in a fresh process (tests/integration/stage_probe.py) and records the nerflow modules it imported;
so do the optional stages, each in a config that turns it on: `pretrain` (token classification), `export` and
`reference` (both task types), `distill` with the `export` stage that consumes it (token classification)."""
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

from .corpus import copy_cache

PROBE = Path(__file__).with_name("stage_probe.py")


def probe_context(cfg, cache_copy: Path, name: str, one_epoch: bool = True):
    """A RunContext that forces every stage of `cfg`, in a copy of its stage cache and a model name of its own, with
    an MLflow run to log into: what the probe's children run. `one_epoch` False keeps the training settings, so a job
    that probes a stage after `train` finds the template's trained model in the cache copy."""
    from nerflow.prefect_tasks import tracking
    from nerflow.prefect_tasks.stage import RunContext

    cfg = cfg.model_copy(update={
        "cache_dir": cache_copy, "experiment": "nerflow-code-identity",
        "registry": cfg.registry.model_copy(update={"model_name": f"code-identity-{name}"}),
        **({"train": cfg.train.model_copy(update={"epochs": 1})} if one_epoch else {})})
    plan = make_plan(cfg, force_from=PIPELINE.names[0])
    client = tracking.configure()
    run_id = tracking.open_run(client, cfg, plan.logical_run, None)
    return RunContext(cfg, plan, run_id)


@pytest.fixture(scope="module")
def pretrain_cfg(pipeline_result, tmp_path_factory):
    """The token-classification config with the optional stage on: one short epoch on a file of unlabelled text
    (the tiny corpus's own training sentences all recur in its validation and test splits, so decontamination
    would leave nothing of them)."""
    unlabelled = tmp_path_factory.mktemp("code-identity-text") / "unlabelled.txt"
    unlabelled.write_text("".join(f"{who} visited {org} in {where} on Monday .\n" for who in ("Maria Lopez", "Ann Wu")
                                  for org in ("Globex", "Initech", "Acme Corp") for where in ("Berlin", "Paris")))
    cfg = pipeline_result[0]
    return cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={
        "enabled": True, "epochs": 1, "text": (str(unlabelled),), "heldout_every": 4})})


def exporting(cfg):
    return cfg.model_copy(update={"export": cfg.export.model_copy(update={"enabled": True, "latency_requests": 3})})


def distilling(cfg):
    return exporting(cfg).model_copy(update={"distill": cfg.distill.model_copy(update={
        "enabled": True, "layers": 1, "epochs": 1})})


# a job's stages (default: the optional stage its name starts with); distill's consumer, export, changes with it
JOB_STAGES = {"distill-ner": ("distill", "export")}


def referencing(cfg):
    return cfg.model_copy(update={"monitor": cfg.monitor.model_copy(update={"reference": True})})


@pytest.fixture(scope="module")
def optional_configs(pipeline_result, textcat_run, pretrain_cfg) -> dict[str, tuple]:
    """Per optional stage probed: (the config that turns it on, the task type whose main stages it joins)."""
    ner, textcat = pipeline_result[0], textcat_run[0]
    return {"pretrain": (pretrain_cfg, ner.task), "export-ner": (exporting(ner), ner.task),
            "export-textcat": (exporting(textcat), textcat.task), "reference-ner": (referencing(ner), ner.task),
            "reference-textcat": (referencing(textcat), textcat.task), "distill-ner": (distilling(ner), ner.task)}


@pytest.fixture(scope="module")
def executed(pipeline_result, textcat_run, optional_configs, tmp_path_factory) -> dict[str, dict[str, set[str]]]:
    """{task: {stage: nerflow modules the stage imported when it ran}}; an optional stage's job (e.g. "pretrain",
    "export-ner") holds that stage alone, run in a config with it on (the outputs it consumes are the same there)."""
    jobs_dir = tmp_path_factory.mktemp("stage-probe")
    jobs = []
    ner_cfg = pipeline_result[0]
    for name, cfg, stages in (("ner", ner_cfg, PIPELINE.names), ("textcat", textcat_run[0], PIPELINE.names),
                              *((job, cfg, JOB_STAGES.get(job, (job.partition("-")[0],)))
                                for job, (cfg, _) in optional_configs.items())):
        cache_copy = jobs_dir / f"{name}-cache"
        copy_cache(cfg.cache_dir, cache_copy)
        # a stage after `train` needs the template's trained model: its training settings are kept
        after_train = name.startswith(("export", "reference", "distill"))
        context = probe_context(cfg, cache_copy, name, one_epoch=not after_train)
        (jobs_dir / f"{name}.pkl").write_bytes(pickle.dumps(context))
        jobs.append({"name": name, "context": f"{name}.pkl", "stages": list(stages),
                     "task": name if name in optional_configs else cfg.task})
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
    assert set(executed) == {"token-classification", "text-classification", "pretrain", "export-ner",
                             "export-textcat", "reference-ner", "reference-textcat", "distill-ner"}
    main = {task: stages for task, stages in executed.items() if task.endswith("classification")}
    for stages in main.values():
        assert set(stages) == set(PIPELINE.names)
    assert all("nerflow.prefect_tasks.stage" in modules for stages in executed.values() for modules in stages.values())
    assert "nerflow.pretrain" in executed["pretrain"]["pretrain"]
    assert "nerflow.pretrain" not in executed["token-classification"]["train"]
    assert {"nerflow.distill", "nerflow.ner.training"} <= executed["distill-ner"]["distill"]
    assert "nerflow.distill" not in executed["token-classification"]["train"]
    assert "nerflow.ner.export" in executed["export-ner"]["export"] and "nerflow.export" in executed["export-ner"][
        "export"] and "nerflow.textcat.export" in executed["export-textcat"]["export"]
    assert not any("nerflow.export" in modules for stages in main.values() for modules in stages.values())
    assert {"nerflow.drift_profile", "nerflow.ner.reference", "nerflow.ner.predict"} <= executed["reference-ner"][
        "reference"] and "nerflow.textcat.reference" in executed["reference-textcat"]["reference"]
    assert not any("nerflow.drift_profile" in modules for stages in main.values() for modules in stages.values())
    ner, textcat = executed["token-classification"], executed["text-classification"]
    assert "nerflow.ner.training" in ner["train"] and "nerflow.ner.training" not in ner["validate"]
    assert not any(m.startswith("nerflow.textcat") for modules in ner.values() for m in modules)
    assert not any(m.startswith("nerflow.ner.") for modules in textcat.values() for m in modules)


def test_editing_any_module_changes_exactly_the_keys_of_the_stages_that_run_it(executed, pipeline_result,
                                                                              textcat_run, optional_configs, tmp_path,
                                                                              monkeypatch):
    """One row per (module, task type): the stages whose code identity changed must be the stages that imported
    the module, and the stages whose key changed those and every stage downstream of them."""
    from nerflow import plan as planning

    # an optional stage is checked in the config that turns it on: there the main stages run what they run
    # without it (measured above), and the optional stage what the probe measured for it
    configs = {pipeline_result[0].task: pipeline_result[0], textcat_run[0].task: textcat_run[0],
               **{job: cfg for job, (cfg, _) in optional_configs.items()}}
    ran = {**{task: executed[task] for task in configs if task not in optional_configs},
           **{job: {**executed[task], **executed[job]} for job, (_, task) in optional_configs.items()}}
    graphs = {task: PIPELINE.active(cfg) for task, cfg in configs.items()}
    assert graphs["pretrain"].names == ("validate", "tokenize", "pretrain", "train", "evaluate", "register", "promote")
    assert graphs["distill-ner"].names == ("validate", "tokenize", "train", "evaluate", "distill", "export", "register",
                                           "promote")
    assert graphs["export-textcat"].names == ("validate", "tokenize", "train", "evaluate", "export", "register",
                                              "promote")
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
    assert set(before["pretrain"]) == set(graphs["pretrain"].names)
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
        for task, stages in ran.items():
            graph = graphs[task]
            runs_it = {s for s, imported in stages.items() if name in imported}
            code_changed = {s for s in graph.names if before[task][s][1] != after[task][s][1]}
            key_changed = {s for s in graph.names if before[task][s][0] != after[task][s][0]}
            downstream = set().union(*(graph.downstream(s) for s in runs_it)) if runs_it else set()
            if code_changed != runs_it or key_changed != downstream:
                wrong.append(f"{name} [{task}]: run by {sorted(runs_it)}, code identity changed for "
                             f"{sorted(code_changed)}, keys changed for {sorted(key_changed)}")
    assert identities() == before                       # every edit was undone
    assert wrong == [], "\n".join(wrong)
