"""The declared stage graph: a stage declared once drives the plan, its keys, `--dry-run` and `rerun --from`. A
toy stage in a test-only graph (tests/unit/toy_stage.py) is handled with no other change."""
from __future__ import annotations

import pytest
import yaml

from nerflow import graph as stage_graph
from nerflow.config import resolved_dict
from nerflow.flows import cli
from nerflow.graph import PIPELINE, Graph, Stage
from nerflow.outputs import Validated
from nerflow.plan import explain, make_plan
from nerflow.prefect_tasks import tracking
from tests.unit.test_plan import complete_cache, config, keys, project  # noqa: F401 - the fixture, reused
from tests.unit.toy_stage import COUNT, GRAPH


def test_a_graph_is_declared_in_order_and_once():
    with pytest.raises(ValueError, match="declared twice"):
        Graph((*PIPELINE.stages, PIPELINE.stages[0]))
    with pytest.raises(ValueError, match="consumes nowhere, not declared before it"):
        Graph((Stage("a", consumes=("nowhere",), reads=(), output=Validated),))
    assert PIPELINE.downstream("evaluate") == {"evaluate", "register", "promote"}
    assert PIPELINE.sinks() == ("promote",) and GRAPH.sinks() == ("promote", "count")
    assert GRAPH.downstream("validate") == set(GRAPH.names) and GRAPH.downstream("count") == {"count"}


def test_a_toy_stage_gets_a_key_from_its_declaration(project):  # noqa: F811
    plan = make_plan(config(project), graph=GRAPH)
    assert list(plan.stages) == [*PIPELINE.names, "count"]
    step = plan.stages["count"]
    assert set(step.parts) == {"validate", "settings", "code"} and step.parts["settings"] == {"seed": 42}
    assert step.parts["validate"] == plan.stages["validate"].key
    assert "tests.unit.toy_stage" in step.parts["code"]["modules"]     # its own code, though outside nerflow
    assert {s: k for s, k in keys(plan).items()} == keys(make_plan(config(project)))   # the others: unchanged
    reseeded = make_plan(config(project, "seed=7"), graph=GRAPH)
    assert reseeded.stages["count"].key != step.key and reseeded.stages["validate"].key == plan.stages["validate"].key
    assert make_plan(config(project, "evaluate.batch_size=7"), graph=GRAPH).stages["count"].key == step.key


def test_forcing_follows_the_graph(project):  # noqa: F811
    root = project / "cache"
    plan = make_plan(config(project), graph=GRAPH)
    complete_toy_cache(plan)
    assert make_plan(config(project), graph=GRAPH).first_to_compute() is None
    forced = make_plan(config(project), force_from="count", graph=GRAPH)
    assert [s for s, p in forced.stages.items() if p.forced] == ["count"]
    assert explain(forced.stages["count"], root) == "compute: forced"
    assert [s for s, p in make_plan(config(project), force_from="validate", graph=GRAPH).stages.items()
            if not p.forced] == []
    assert [s for s, p in make_plan(config(project), force_from="evaluate", graph=GRAPH).stages.items()
            if p.forced] == ["evaluate", "register", "promote"]


def complete_toy_cache(plan) -> None:
    from nerflow import cache

    complete_cache(plan)   # the six stages
    step = plan.stages["count"]
    with cache.stage_output(step.path.parent.parent, "count", step.key, step.parts) as out:
        (out / "output.json").write_text('{"examples": {}}')


def test_dry_run_and_rerun_from_handle_the_toy_stage(project, monkeypatch, tmp_path, capsys):  # noqa: F811
    """The CLI reads the graph when it runs: with the toy graph in place, `run --dry-run` lists the toy stage and
    `rerun RUN --from count` accepts it and forces it alone."""
    monkeypatch.setattr(stage_graph, "PIPELINE", GRAPH)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = config(project)
    assert cli.main(["run", str(project / "cfg.yaml"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [*PIPELINE.names, "count"]
    assert lines[-1].split(None, 1)[1] == "compute: no earlier output of this stage"

    plan = make_plan(cfg, graph=GRAPH)
    complete_toy_cache(plan)
    client = tracking.configure()       # this test's store (a test before may have pointed MLflow elsewhere)
    run_id = client.create_run(client.create_experiment("toy"), tags={"nerflow.logical_run": plan.logical_run}
                               ).info.run_id
    client.log_text(run_id, yaml.safe_dump(resolved_dict(cfg)), "config/resolved.yaml")
    assert cli.main(["rerun", run_id, "--from", COUNT.name, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"rerunning {run_id} (RUNNING) from count"
    assert [line.split(None, 1) for line in lines[1:]] == \
        [[s, "reuse: inputs, settings and code unchanged"] for s in PIPELINE.names] + [["count", "compute: forced"]]
    monkeypatch.setattr(stage_graph, "PIPELINE", PIPELINE)
    with pytest.raises(SystemExit):                                   # without the toy graph: not a stage
        cli.main(["rerun", run_id, "--from", COUNT.name])
