"""A registry of 300 registered models and 2,000 versions (tests/integration/big_registry.py: built once a session,
copied per test): `nerflow models`, `cache prune` and the scheduled check stay correct, in a bounded number of calls
to the real MLflow stores. And pagination at MLflow's real page boundary: 101 models, one past its 100 a page."""
from __future__ import annotations

import json
import shutil

import pytest

from nerflow.flows import cli

from . import big_registry as big

SIZES = [1000] + [4] * 103 + [3] * 196   # 300 models, 2,000 versions; big-000 alone has 1,000
CHALLENGER = {"big-000": 500}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory):
    return big.schema(tmp_path_factory.mktemp("empty-registry") / "mlflow.db")


@pytest.fixture(scope="session")
def big_template(tmp_path_factory, empty_store):
    path = tmp_path_factory.mktemp("big-registry") / "mlflow.db"
    return path, big.build(path, SIZES, CHALLENGER, empty_store)


@pytest.fixture(scope="session")
def page_template(tmp_path_factory, empty_store):
    path = tmp_path_factory.mktemp("page-registry") / "mlflow.db"
    return path, big.build(path, [1] * 101, empty=empty_store)


def use_copy(template, tmp_path, monkeypatch) -> dict:
    path, newest = template
    shutil.copy(path, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return newest


def test_models_lists_every_model_and_one_models_versions_in_bounded_calls(big_template, tmp_path, monkeypatch,
                                                                           capsys):
    newest = use_copy(big_template, tmp_path, monkeypatch)
    with big.counted_calls() as calls:
        assert cli.main(["models", "--json"]) == 0
    listed = {row["name"]: row["aliases"] for row in json.loads(capsys.readouterr().out)}
    assert listed == {name: {"champion": str(v), **({"challenger": "500"} if name == "big-000" else {})}
                      for name, v in newest.items()}
    assert calls["search_registered_models"] == 3 and sum(calls.values()) <= 4, calls   # 100 a page

    with big.counted_calls() as calls:
        assert cli.main(["models", "big-000", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [int(r["version"]) for r in rows] == list(range(1000, 0, -1))
    assert [r["test_f1"] for r in rows] == [big.test_f1("big-000", v) for v in range(1000, 0, -1)]
    assert rows[0]["aliases"] == ["champion"] and rows[500]["aliases"] == ["challenger"]
    # one model, one page of versions, one page of experiments, their 1,000 runs 100 a search: never one call
    # per version (the old `get_run` per version made 1,000)
    assert calls.get("get_run", 0) == 0 and sum(calls.values()) <= 14, calls
    assert calls["search_runs"] == 10, calls


def test_cache_prune_protects_every_aliased_version_in_bounded_calls(big_template, tmp_path, monkeypatch, capsys):
    from nerflow.flows.commands.cache import protected_keys

    newest = use_copy(big_template, tmp_path, monkeypatch)
    aliased = [*newest.items(), *CHALLENGER.items()]
    expected = {key for name, version in aliased for key in big.stage_keys(name, version).values()}
    cache_dir = tmp_path / "cache"
    with big.counted_calls() as calls:
        assert protected_keys(cache_dir) == expected   # big-299's champion included: past the first page
    # 3 pages of models, the versions of the 300 aliased models 100 names a search
    assert (calls["search_registered_models"], calls["search_model_versions"]) == (3, 3), calls
    assert sum(calls.values()) <= 7, calls
    assert cli.main(["cache", "prune", "--keep", "0", "--dry-run", "--cache-dir", str(cache_dir)]) == 0
    assert f"{len(expected)} keys protected" in capsys.readouterr().out


def test_the_scheduled_check_finds_its_version_among_2000_in_bounded_calls(big_template, tmp_path, monkeypatch,
                                                                          tiny_corpus, corpus_model_dir):
    """What a scheduled run asks before it imports torch (flows/scheduled.py): its plan, then the registry by the
    plan's register key, then the version's run: a few calls however big the registry."""
    import dataclasses

    from nerflow.flows.scheduled import nothing_to_do
    from nerflow.outputs import RunResult
    from nerflow.plan import make_plan
    from nerflow.prefect_tasks import registered, tracking
    from nerflow.prefect_tasks.register import KEY_TAG

    from .corpus import tiny_config

    use_copy(big_template, tmp_path, monkeypatch)
    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, tmp_path / "cache", "registry.model_name=big-150")
    plan = make_plan(cfg)
    keys = {s: p.key for s, p in plan.stages.items()}
    client = tracking.configure()
    # the version a finished run of this plan registered, as the pipeline leaves it (stage keys, outputs.json)
    run_id = client.create_run(tracking.experiment_id(client, "nerflow-scheduled-check"),
                               tags={f"stage.{s}.key": k for s, k in keys.items()}).info.run_id
    outputs = {s.name: s.output(stage=s.name, key=keys[s.name], path="", reused=False) for s in plan.graph.stages}
    version = client.create_model_version("big-150", f"runs:/{run_id}/model", run_id,
                                          tags={KEY_TAG: keys["register"]}).version
    outputs["register"] = dataclasses.replace(outputs["register"], model_name="big-150", version=int(version))
    tracking.log_json(client, run_id, RunResult(run_id, outputs).to_json(), registered.OUTPUTS_ARTIFACT)
    client.set_terminated(run_id, "FINISHED")

    with big.counted_calls() as calls:
        done = registered.find_registered(client, cfg, plan)
    assert done is not None and done.run_id == run_id
    assert f"big-150 version {version} was registered" in nothing_to_do(done)
    assert (calls["search_model_versions"], calls["get_run"]) == (1, 1) and sum(calls.values()) <= 3, calls

    changed = make_plan(tiny_config(tmp_path, tiny_corpus, corpus_model_dir, tmp_path / "cache",
                                    "registry.model_name=big-150", "train.lr=0.001"))
    with big.counted_calls() as calls:
        assert registered.find_registered(client, cfg, changed) is None   # new settings: work to do
    assert calls["search_model_versions"] == 1 and sum(calls.values()) <= 2, calls


def test_pagination_at_mlflows_page_boundary_101_models(page_template, tmp_path, monkeypatch, capsys):
    """MLflow answers 100 registered models a page: the 101st is on the second page, and it counts."""
    from nerflow.flows.commands.cache import protected_keys

    use_copy(page_template, tmp_path, monkeypatch)
    assert cli.main(["models", "--json"]) == 0
    assert {row["name"] for row in json.loads(capsys.readouterr().out)} == {big.model_name(i) for i in range(101)}
    assert set(big.stage_keys(big.model_name(100), 1).values()) <= protected_keys(tmp_path / "cache")
