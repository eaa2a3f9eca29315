"""The optional `pretrain` stage in the plan: off (the default), it is absent and train's key is that of a graph
that never declared it; on, train's key follows pretraining's settings and text."""
from __future__ import annotations

from dataclasses import replace

from nerflow.graph import PIPELINE, Graph
from nerflow.plan import make_plan
from tests.unit.test_plan import config, project  # noqa: F401 - the fixture, reused

WITHOUT_PRETRAIN = Graph(tuple(replace(s, consumes=tuple(c for c in s.consumes if c != "pretrain"))
                               for s in PIPELINE.stages), tuple(s for s in PIPELINE.optional if s.name != "pretrain"))


def keys(plan) -> dict[str, str]:
    return {name: step.key for name, step in plan.stages.items()}


def test_off_the_stage_is_absent_and_no_key_changes(project):  # noqa: F811
    plan = make_plan(config(project))
    assert list(plan.stages) == list(PIPELINE.names) and "pretrain" not in plan.stages
    never = make_plan(config(project), graph=WITHOUT_PRETRAIN)
    for name, step in plan.stages.items():   # consumes, inputs and settings as without it; no pretraining code
        assert step.parts.keys() == never.stages[name].parts.keys()
        assert {k: v for k, v in step.parts.items() if k not in ("code", *PIPELINE.names)} == \
               {k: v for k, v in never.stages[name].parts.items() if k not in ("code", *PIPELINE.names)}
        assert not {"nerflow.pretrain", "nerflow.prefect_tasks.pretrain"} & set(step.parts["code"]["modules"])
    # settings of a stage that is off change nothing
    assert keys(make_plan(config(project, "pretrain.lr=0.001"))) == keys(plan)


def test_on_train_starts_from_pretraining_and_its_key_follows_it(project):  # noqa: F811
    text = project / "unlabelled.txt"
    text.write_text("one paragraph of unlabelled text per line\nand another one\n")
    off = make_plan(config(project))
    on = make_plan(config(project, "pretrain.enabled=true", f"pretrain.text=[{text}]"))
    assert list(on.stages) == ["validate", "tokenize", "pretrain", "train", "evaluate", "register", "promote"]
    assert on.stages["train"].parts["pretrain"] == on.stages["pretrain"].key
    assert on.stages["train"].key != off.stages["train"].key
    assert on.stages["tokenize"].key == off.stages["tokenize"].key
    assert "nerflow.pretrain" in on.stages["pretrain"].parts["code"]["modules"]
    assert on.stages["pretrain"].parts["settings"]["pretrain"]["mlm_probability"] == 0.15
    faster = make_plan(config(project, "pretrain.enabled=true", f"pretrain.text=[{text}]", "pretrain.lr=0.001"))
    assert faster.stages["pretrain"].key != on.stages["pretrain"].key
    assert faster.stages["train"].key != on.stages["train"].key
    text.write_text("other text\n")
    edited = make_plan(config(project, "pretrain.enabled=true", f"pretrain.text=[{text}]"))
    assert edited.stages["pretrain"].key != on.stages["pretrain"].key
    assert edited.stages["train"].key != on.stages["train"].key
    default_text = make_plan(config(project, "pretrain.enabled=true"))
    assert default_text.identities["pretrain_text"] == "training texts"


def test_listings_and_rerun_choices_place_the_optional_stage_where_it_runs():
    from nerflow.graph import logged_on

    assert PIPELINE.all_names == ("validate", "tokenize", "pretrain", "train", "evaluate", "distill", "export",
                                  "reference", "register", "promote")
    assert PIPELINE.run_names(logged_on({"pretrain.enabled": "False"})) == PIPELINE.names
    assert PIPELINE.run_names(logged_on({})) == PIPELINE.names          # a run logged before the stage existed
    assert PIPELINE.run_names(logged_on({"pretrain.enabled": "True"})) == ("validate", "tokenize", "pretrain",
                                                                          "train", "evaluate", "register", "promote")
    assert PIPELINE.run_names(logged_on({"export.enabled": "True"})) == ("validate", "tokenize", "train", "evaluate",
                                                                        "export", "register", "promote")
    assert PIPELINE.run_names(logged_on({"monitor.reference": "True"})) == ("validate", "tokenize", "train",
                                                                           "evaluate", "reference", "register",
                                                                           "promote")
    # distill is consumed by export alone: it runs before export, and only with it (the config requires both)
    assert PIPELINE.run_names(logged_on({"distill.enabled": "True", "export.enabled": "True"})) == (
        "validate", "tokenize", "train", "evaluate", "distill", "export", "register", "promote")
    assert PIPELINE.run_names(logged_on({"pretrain.enabled": "True", "export.enabled": "True",
                                         "monitor.reference": "True", "distill.enabled": "True"})) == \
        PIPELINE.all_names
