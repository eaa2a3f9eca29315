"""Already done? Asked of the registry (tasks/registered.py): what a worker on another host, with an empty stage
cache, decides from the shared registry alone."""
from __future__ import annotations

from mlflow import MlflowClient

from nerflow.plan import make_plan
from nerflow.prefect_tasks import registered


def test_a_registered_logical_run_is_found_from_the_registry_alone(pipeline_result, tmp_path):
    cfg, result = pipeline_result
    other_host = cfg.model_copy(update={"cache_dir": tmp_path / "empty-cache"})
    plan = make_plan(other_host)
    assert plan.first_to_compute() == "validate"   # nothing in this host's cache
    done = registered.find_registered(MlflowClient(), other_host, plan)
    assert done is not None
    assert (done["register"].model_name, done["register"].version, done.run_id) == \
        (result["register"].model_name, result["register"].version, result.run_id)
    assert done.already_done and all(done.stages.values())        # read from the run's logged outputs, all reused
    assert done["evaluate"].metrics["test/f1"] == result["evaluate"].metrics["test/f1"]
    assert done["promote"].decision["decision"] == result["promote"].decision["decision"]


def test_changed_settings_are_not_done(pipeline_result, tmp_path):
    cfg, _ = pipeline_result
    client = MlflowClient()
    for section, change in (("train", {"epochs": cfg.train.epochs + 1}),        # another register key
                            ("promote", {"min_delta": cfg.promote.min_delta + 0.01})):  # same version, gate not run
        changed = cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=change),
                                         "cache_dir": tmp_path / section})
        assert registered.find_registered(client, changed, make_plan(changed)) is None


def test_the_check_is_noted_on_the_versions_run(pipeline_result):
    _, result = pipeline_result
    client = MlflowClient()
    note = registered.note_unchanged(client, result.run_id, "Prefect flow run f-1 of deployment nightly")
    assert client.get_run(result.run_id).data.tags[registered.CHECK_TAG] == note
    assert note.endswith("Prefect flow run f-1 of deployment nightly: nothing to do, data, config and code unchanged")
