"""Kill a promotion command at a named point, run the next command, and check the registry: for
tests/integration/test_crash_points.py. `python crash_driver.py WORK_DIR`. WORK_DIR/scenarios.json lists {"name",
"operation", "point", "junk"} ("junk": malformed history tags are added first; "point" "" runs the operation to the
end). This process imports MLflow and nerflow once and then forks: one child builds the starting registry (a sqlite
store, snapshot copied per scenario), and per scenario (two at a time, each on its own copy) one child runs the
operation with NERFLOW_FAULT_POINT=<point> (it must die by SIGKILL there), one runs the next command (`nerflow
models history`, which settles the history under the lock) and one reads the registry and checks the invariants. The
parent never opens a store, so no child inherits a database connection. Results go to WORK_DIR/results.json: {name:
{"killed", "next_command_status", "problems", "alias", "marks"}}.

The starting registry, 4 versions: promote ->1, promote 1->3, rollback 3->1 (3 marked rolled back), promote 1->2.
So @champion is 2, the stack [1, 2], the rolled-back set {3}.
"""
import json
import os
import re
import shutil
import signal
import sys
import traceback
from pathlib import Path

import mlflow  # noqa: F401 - imported once here, before the forks
from mlflow import MlflowClient

from nerflow import faults, history, promotion
from nerflow.flows.commands import models
from nerflow.prefect_tasks import approval, champion, gate_scoring

NAME, ALIAS, TASK = "crash-model", "champion", "token-classification"
PARALLEL = 2
START = {"alias": "2", "marks": ["3"]}
# the state an uninterrupted operation leaves (the gate is told to accept version 4)
FINAL = {"gate": {"alias": "4", "marks": ["3"]}, "force": {"alias": "3", "marks": []},
         "rollback": {"alias": "1", "marks": ["2", "3"]},
         # version 4, which a gate left awaiting approval / handed to the promoter after comparing it with 2
         "approve": {"alias": "4", "marks": ["3"]}, "handover": {"alias": "4", "marks": ["3"]}}
# what the last move's version must say once settled: never still waiting for the move that happened
SETTLED_VERDICT = {"force": "forced", "approve": promotion.APPROVED}


def use_store(db: Path) -> MlflowClient:
    # both: mlflow.set_registry_uri (nerflow's tracking.configure, run in-process by earlier tests) exports
    # MLFLOW_REGISTRY_URI, and a child inheriting it would register in that other store
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = f"sqlite:///{db}"
    return MlflowClient()


def build_start(db: Path, artifacts: Path) -> None:
    client = use_store(db)
    client.create_registered_model(NAME)
    run = client.create_run(client.create_experiment("crash", artifact_location=artifacts.as_uri())).info.run_id
    for _ in range(4):
        client.create_model_version(NAME, source=f"{artifacts.as_uri()}/model", run_id=run,
                                    tags={champion.TASK_TAG: TASK, "data_hash": "d"})
    entries: list[history.Entry] = []
    for action, old, new in (("promote", None, "1"), ("promote", "1", "3"), ("rollback", "3", "1"),
                             ("promote", "1", "2")):
        champion.record(client, NAME, ALIAS, entries, action=action, actor="test", from_version=old,
                        to_version=new, reason="start")
    client.set_registered_model_alias(NAME, ALIAS, "2")
    client.set_model_version_tag(NAME, "3", champion.ROLLED_BACK_TAG, "true")


def accept(*args, **kwargs) -> promotion.Decision:
    """The gate's scores do not matter here (its writes do): version 4 is accepted without serving models."""
    return promotion.Decision(True, "accepted by the crash test", 0.9, 0.8, None, ())


JUNK = {f"{history.PREFIX}.{ALIAS}.000099": "{not json", f"{history.PREFIX}.{ALIAS}.notes": "typed in the UI"}


def operate(db: Path, operation: str, junk: bool) -> None:
    client = use_store(db)
    for key, value in (JUNK if junk else {}).items():   # tags anyone can add in the MLflow UI
        client.set_registered_model_tag(NAME, key, value)
    if operation == "gate":
        gate_scoring.decide = accept
        champion.gate(client, NAME, "4", ALIAS, promotion.GateRules(), Path("unused"), [], True, auto=True,
                      actor="test", evidence={}, task=TASK)
    elif operation == "force":
        champion.force(client, NAME, "3", ALIAS, "test", "forced by the crash test")
    elif operation == "rollback":
        champion.rollback(client, NAME, ALIAS, "test")
    elif operation in ("approve", "handover"):
        held = promotion.AWAITING if operation == "approve" else promotion.HANDED_OVER
        for key, value in ((champion.AGAINST_TAG, "2"), (champion.REASON_TAG, "the gate accepted it: better"),
                           (champion.DECISION_TAG, held)):   # as the gate leaves it (no kill point here)
            client.set_model_version_tag(NAME, "4", key, value)
        if operation == "approve":
            approval.approve(client, NAME, "4", ALIAS, "test", "approved by the crash test")
        else:
            approval.promote_handed_over(client, NAME, "4", ALIAS, "test")
    else:
        raise ValueError(operation)


def next_command(db: Path) -> None:
    use_store(db)
    models.history(MlflowClient(), NAME, ALIAS, as_json=True)


def check(db: Path, operation: str, out: Path) -> None:
    """The invariants, read straight from the registry."""
    client = use_store(db)
    model = client.get_registered_model(NAME)
    entries = history.decode_all(model.tags, ALIAS)
    alias = model.aliases.get(ALIAS)
    alias = None if alias is None else str(alias)
    versions = client.search_model_versions(f"name = '{NAME}'")
    marks = sorted(str(v.version) for v in versions if v.tags.get(champion.ROLLED_BACK_TAG) == "true")
    stack = history.stack(entries)
    problems = []
    if any(e.state == history.INTENDED for e in entries):
        problems.append(f"intended entries left: {[e.seq for e in entries if e.state == history.INTENDED]}")
    if (stack[-1] if stack else None) != alias:
        problems.append(f"alias {alias} is not the top of the history's stack {stack}")
    if sorted(history.rolled_back_versions(entries)) != marks:
        problems.append(f"rolled back by the history {sorted(history.rolled_back_versions(entries))}, "
                        f"marked on versions {marks}")
    if any(champion.TASK_TAG not in v.tags for v in versions):
        problems.append("a version without its registration tags")
    done = [e for e in entries if e.state == history.DONE]
    verdict = client.get_model_version(NAME, done[-1].to_version).tags.get(champion.DECISION_TAG)
    if done[-1].action in SETTLED_VERDICT and verdict != SETTLED_VERDICT[done[-1].action]:
        problems.append(f"{done[-1].action}d version {done[-1].to_version} is tagged {verdict!r}")
    if verdict in (promotion.AWAITING, promotion.HANDED_OVER):
        problems.append(f"version {done[-1].to_version} is @{ALIAS} and still tagged {verdict!r}")
    # the registered model's page is derived from the settled history: its newest row is the champion
    page = (client.get_registered_model(NAME).description or "").split("## Champion history")
    newest = re.search(r"^\| (v\d+|—) \|", page[-1], re.M) if len(page) == 2 else None
    if newest is None or newest.group(1) != f"v{alias}":
        problems.append(f"the description's champion history does not start with v{alias}: {page[-1][:300]!r}")
    state = {"alias": alias, "marks": marks}
    if state not in (START, FINAL[operation]):
        problems.append(f"{state} is neither the start {START} nor what {operation} makes {FINAL[operation]}")
    out.write_text(json.dumps({"problems": problems, **state}))


def fork(target, *args, env: dict | None = None) -> int:
    """Run `target` in a forked child; its pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.environ.update(env or {})
            target(*args)
        except BaseException:  # noqa: BLE001 - report whatever failed
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def in_child(target, *args, env: dict | None = None) -> int:
    """Run `target` in a forked child; its wait status (a signal number when it was killed)."""
    return os.waitpid(fork(target, *args, env=env), 0)[1]


def scenario_result(work: Path, start: Path, scenario: dict) -> None:
    """One scenario on its own copy of the start: the operation killed at its point, the next command, the check;
    each in its own child."""
    db = work / f"{scenario['name']}.db"
    shutil.copy(start, db)
    status = in_child(operate, db, scenario["operation"], scenario.get("junk", False),
                      env={faults.ENV: scenario["point"]})
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    repaired = in_child(next_command, db)
    checked = work / f"{scenario['name']}.json"
    in_child(check, db, scenario["operation"], checked)
    (work / f"{scenario['name']}.result.json").write_text(json.dumps(
        {"killed": killed, "next_command_status": repaired, **json.loads(checked.read_text())}))


def main(work: Path) -> int:
    assert not os.environ.get(faults.ENV)
    start = work / "start.db"
    if in_child(build_start, start, work / "artifacts") != 0:
        return 1
    scenarios = json.loads((work / "scenarios.json").read_text())
    pending, running = list(scenarios), set()
    while pending or running:   # scenarios are independent (each its own store): two at a time, one per core
        while pending and len(running) < PARALLEL:
            running.add(fork(scenario_result, work, start, pending.pop(0)))
        running.discard(os.wait()[0])
    results = {s["name"]: json.loads((work / f"{s['name']}.result.json").read_text()) for s in scenarios}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
