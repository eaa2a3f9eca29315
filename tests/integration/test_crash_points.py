"""A crash at any point of a move of @champion leaves a state the next command repairs (issue 20).

For every named kill point (nerflow.faults) that gate promotion, forced promotion, rollback, approval and the promote
deployment's move of a handed-over version pass, the operation is SIGKILLed there; then `nerflow models history`
(which settles the history) runs, and the registry must pass one invariant check: no intended entry left, alias ==
top of the replayed history, the rolled-back marks on versions == the history's rolled-back set, every version
tagged, a forced version tagged forced, an approved one approved, the champion never left "awaiting approval" or
"handed to the promoter", and the state either the one before the operation or the one the uninterrupted one leaves
(tests/integration/crash_driver.py). Registration's points are tested with a real pipeline run below; checkpoints'
in tests/unit/test_checkpoint_crashes.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .corpus import copy_cache

DRIVER = Path(__file__).with_name("crash_driver.py")
# (operation, the points it passes, in order)
MOVES = {
    "gate": ["version.reason-tagged", "gate.decided", "promotion.intended", "promotion.alias-moved",
             "promotion.versions-tagged"],
    "force": ["promotion.intended", "promotion.alias-moved", "version.reason-tagged",
              "version.rolled-back-unmarked", "promotion.versions-tagged"],
    "rollback": ["promotion.intended", "promotion.alias-moved", "version.rolled-back-marked",
                 "promotion.versions-tagged"],
    # the second half of approval mode (`nerflow approve`) and of auto mode with a promote deployment
    "approve": ["promotion.intended", "promotion.alias-moved", "version.reason-tagged", "promotion.versions-tagged"],
    "handover": ["promotion.intended", "promotion.alias-moved", "version.reason-tagged", "promotion.versions-tagged"],
}


def run_driver(work: Path, scenarios: list[dict]) -> dict:
    (work / "scenarios.json").write_text(json.dumps(scenarios))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "NERFLOW_FAULT_POINT")}
    done = subprocess.run([sys.executable, str(DRIVER), str(work)], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-5000:]
    return json.loads((work / "results.json").read_text())


def test_a_kill_between_any_two_writes_of_a_promotion_is_repaired_by_the_next_command(tmp_path):
    scenarios = [{"name": f"{op}-{point}", "operation": op, "point": point} for op, points in MOVES.items()
                 for point in points]
    scenarios += [{"name": f"{op}-uninterrupted-with-junk-tags", "operation": op, "point": "", "junk": True}
                  for op in MOVES]
    results = run_driver(tmp_path, scenarios)
    wrong = {}
    for s in scenarios:
        r = results[s["name"]]
        if r["killed"] != bool(s["point"]) or r["next_command_status"] != 0 or r["problems"]:
            wrong[s["name"]] = r
    assert wrong == {}, json.dumps(wrong, indent=1)
    # the kills before the alias moved leave the start; those after, the finished move
    assert results["rollback-promotion.intended"]["alias"] == "2"
    assert results["rollback-promotion.alias-moved"] == {**results["rollback-uninterrupted-with-junk-tags"],
                                                         "killed": True}


REGISTER_POINTS = ["register.version-created", "register.alias-moved", "cache.output-written/register"]


def test_a_kill_between_the_writes_of_registration_leaves_one_tagged_version_after_the_next_run(
        pipeline_result, tmp_path):
    """Killed after the version was created (with its tags and description, one call) or after the alias moved, the
    next run of the stage registers nothing new: one version, all its tags, the alias on it, the stage output
    naming it."""
    import pickle
    import shutil

    from mlflow import MlflowClient

    from nerflow import cache
    from nerflow.outputs import OUTPUT_FILE
    from nerflow.plan import make_plan
    from nerflow.prefect_tasks import tracking
    from nerflow.prefect_tasks.register import KEY_TAG
    from nerflow.prefect_tasks.stage import RunContext

    template, _ = pipeline_result
    client = MlflowClient()
    for point in REGISTER_POINTS:
        name = f"crash-register-{point.split('.')[-1].replace('/', '-')}"
        cache_copy = tmp_path / name
        copy_cache(template.cache_dir, cache_copy)
        shutil.rmtree(cache_copy / "register")   # this copy has everything but a registered version
        cfg = template.model_copy(update={
            "cache_dir": cache_copy, "registry": template.registry.model_copy(update={"model_name": name})})
        plan = make_plan(cfg)
        assert plan.first_to_compute() == "register"
        ctx = RunContext(cfg, plan, tracking.open_run(tracking.configure(), cfg, plan.logical_run, None))
        (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps(ctx))
        done = subprocess.run([sys.executable, str(DRIVER.with_name("stage_crash.py")), str(tmp_path / f"{name}.pkl"),
                               "register", point], capture_output=True, text=True, timeout=600,
                              env={k: v for k, v in os.environ.items() if k != "NERFLOW_FAULT_POINT"})
        assert done.returncode == 0, done.stderr[-5000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == {"killed": True, "next_status": 0}, point
        (version,) = client.search_model_versions(f"name = '{name}'")
        assert version.tags[KEY_TAG] == plan.stages["register"].key and version.description, point
        assert {"data_hash", "config_hash", "nerflow.task", "nerflow.weights_sha256"} <= set(version.tags), point
        assert str(client.get_registered_model(name).aliases[cfg.registry.alias]) == str(version.version), point
        entry = cache.lookup(cache_copy, "register", plan.stages["register"].key)
        assert json.loads((entry / OUTPUT_FILE).read_text())["version"] == int(version.version), point
