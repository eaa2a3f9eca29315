"""The search space, the sampler and pruner settings, the study's name (nerflow.tuning), the subsets of a learning
curve (nerflow.subsets) and what a tuning deployment may ask (nerflow.tune_guard): pure functions."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import pytest

from nerflow import subsets, tuning
from nerflow.config import ConfigError, load_config
from nerflow.data import DataError
from nerflow.deploy_guard import DeploymentRefused
from nerflow.tune_guard import check_tune_parameters


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "c.yaml").write_text("data: {dir: .}\n")
    return load_config(tmp_path / "c.yaml")


def test_a_space_file_becomes_typed_dimensions_and_overrides(tmp_path, cfg):
    space_file = tmp_path / "space.yaml"
    space_file.write_text("train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}\ntrain.epochs: {low: 2, high: 5}\n"
                          "train.freeze: {choices: [none, 1]}\n")
    space = tuning.load_space(space_file, cfg)
    lr, epochs, freeze = space.dimensions
    assert (lr.origin, lr.log, lr.is_int, epochs.is_int, freeze.choices) == \
        (f"{space_file}:1", True, False, True, ("none", 1))
    trial = optuna.create_study().ask()
    params = {d.key: d.suggest(trial) for d in space.dimensions}
    assert 1e-5 <= params["train.lr"] <= 1e-3 and isinstance(params["train.epochs"], int)
    overrides = space.overrides({"train.lr": 0.0001, "train.epochs": 3, "train.freeze": "none"})
    assert overrides == ["train.lr=0.0001", "train.epochs=3", "train.freeze=none"]
    tuned = load_config(tmp_path / "c.yaml", overrides)   # the overrides read back as the values
    assert (tuned.train.lr, tuned.train.epochs, tuned.train.freeze) == (0.0001, 3, "none")


def test_the_default_space_follows_the_task_type_and_the_batch_rule(cfg, tmp_path):
    assert "train.batch_tokens" in tuning.load_space(None, cfg).as_data()
    by_size = load_config(tmp_path / "c.yaml", ["train.batch_size=16"])
    data = tuning.load_space(None, by_size).as_data()
    assert "train.batch_size" in data and "train.batch_tokens" not in data
    tuning.check_space(tuning.load_space(None, cfg), tmp_path / "c.yaml", [], cfg)   # every end is valid


@pytest.mark.parametrize("text, message", [
    ("train.lr: 0.1\n", "space.yaml:1: train.lr: expected {low: A, high: B"),
    ("train.lr: {low: 1, high: 2, scale: log}\n", "unknown field 'scale'"),
    ("train.lr: {choices: []}\n", "choices must be a non-empty list"),
    ("train.lr: {low: 1}\n", "a range needs both low and high"),
    ("train.lr: {low: a, high: 2}\n", "low must be a number"),
    ("train.epochs: {low: 1, high: 3}\ntrain.lr: {low: 1, high: 2, step: 0.5, log: true}\n",
     "space.yaml:2: train.lr: step must be > 0, and cannot be combined with log"),
    ("- train.lr\n", "space.yaml:1: a search space is a mapping"),
    ("train.lr: {low: 1, high: [\n", "space.yaml:2: not valid YAML"),
])
def test_a_malformed_space_names_its_file_and_line(tmp_path, cfg, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("(", r"\(")):
        tuning.load_space(path, cfg)


def test_the_settings_are_stated_and_not_optunas_defaults():
    small = tuning.SearchSettings.for_study(6, seed=7)
    assert small.startup_trials == 2 and tuning.SearchSettings.for_study(60, 7).startup_trials == 10
    sampler, pruner = small.sampler(), small.pruner()
    assert isinstance(sampler._inner, optuna.samplers.TPESampler) and sampler._inner._n_startup_trials == 2
    assert isinstance(pruner, optuna.pruners.MedianPruner) and pruner._n_startup_trials == 2
    assert "2 random startup trials" in small.describe() and small.as_params()["tune.pruner_warmup_epochs"] == "1"


def test_the_study_name_changes_with_the_config_and_the_space_not_with_the_tuned_keys(tmp_path, cfg):
    space = tuning.load_space(None, cfg)
    same = load_config(tmp_path / "c.yaml", ["train.lr=0.01", f"cache_dir={tmp_path}"])
    other = load_config(tmp_path / "c.yaml", ["train.weight_decay=0.1"])
    assert tuning.study_name(cfg, space) == tuning.study_name(same, space) != tuning.study_name(other, space)
    (tmp_path / "s.yaml").write_text("train.lr: {low: 1.0e-5, high: 1.0e-3}\n")
    assert tuning.study_name(cfg, tuning.load_space(tmp_path / "s.yaml", cfg)) != tuning.study_name(cfg, space)


def test_subsets_by_document_and_stratified_are_seeded_and_proportional():
    items = [(doc, i) for doc in range(20) for i in range(3)]
    a = subsets.by_group(items, lambda x: x[0], 0.25, seed=1)
    assert len({d for d, _ in a}) == 5 and len(a) == 15 and a == subsets.by_group(items, lambda x: x[0], 0.25, 1)
    assert a != subsets.by_group(items, lambda x: x[0], 0.25, seed=2)
    labelled = [("pos", i) for i in range(40)] + [("neg", i) for i in range(20)]
    s = subsets.stratified(labelled, lambda x: x[0], 0.5, seed=3)
    assert Counter(label for label, _ in s) == {"pos": 20, "neg": 10}
    error = subsets.too_few(0.01, 13, "texts", 1, 60, Counter({"pos": 40, "neg": 20}), Counter({"pos": 1}), "texts")
    assert isinstance(error, DataError) and "keeps 1 of 60 texts and no example of neg (20 texts" in str(error)


def test_a_tuning_deployment_may_not_point_outside_its_working_directory(tmp_path):
    work = tmp_path / "work"
    work.mkdir()

    def check(**changes):
        params = {"config": "c.yaml", "overrides": [], "workdir": str(work), "space": "space.yaml",
                  "study": "s-1", "numbers": {"trials": 3, "timeout": None, "startup_trials": None,
                                              "pruner_startup_trials": 2, "warmup_epochs": 1}} | changes
        return check_tune_parameters(params["config"], params["overrides"], params["workdir"], params["space"],
                                     params["study"], params["numbers"], cwd=work, roots=(work,),
                                     known_keys={"train.lr"})

    assert check().workdir == work.resolve()
    for changes, message in (({"space": "../x.yaml"}, "space"), ({"space": "/etc/passwd"}, "outside"),
                             ({"study": "a b"}, "study"), ({"study": "../x"}, "study"),
                             ({"numbers": {"trials": 0}}, "trials"), ({"numbers": {"trials": "3"}}, "trials"),
                             ({"numbers": {"timeout": -1}}, "timeout"), ({"overrides": ["data.dir=/etc"]}, "data.dir")):
        with pytest.raises(DeploymentRefused, match=message):
            check(**changes)
    assert Path(work).exists()


def _ask_and_tell(study: optuna.Study) -> dict:
    trial = study.ask()
    params = {"lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True), "freeze": trial.suggest_categorical(
        "freeze", ["none", "embeddings", "1", "2"]), "epochs": trial.suggest_int("epochs", 2, 6)}
    study.tell(trial, params["lr"] * 1000)
    return params


def _process(url: str, settings) -> optuna.Study:
    """The study as one `nerflow tune` process (or worker) opens it: a sampler of its own."""
    return optuna.create_study(storage=url, study_name="s", direction="maximize", sampler=settings.sampler(),
                               load_if_exists=True)


def test_a_continued_study_draws_new_values_and_the_same_ones_as_an_uninterrupted_study(tmp_path):
    settings = tuning.SearchSettings.for_study(12, seed=42)       # 4 random startup trials
    url = f"sqlite:///{tmp_path / 'continued.db'}"
    # stopped after each trial and continued by the same command: a new process, a new sampler each time
    continued = [_ask_and_tell(_process(url, settings)) for _ in range(3)]
    assert len({tuple(p.values()) for p in continued}) == 3, continued   # no trial repeats another's values
    whole = _process(f"sqlite:///{tmp_path / 'whole.db'}", settings)
    assert [_ask_and_tell(whole) for _ in range(3)] == continued


def test_two_workers_of_one_study_do_not_draw_the_same_values(tmp_path):
    settings = tuning.SearchSettings.for_study(12, seed=42)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = _process(url, settings), _process(url, settings)
    a, b = first.ask(), second.ask()                     # both workers start a trial before either ends
    assert a.number != b.number
    assert a.suggest_float("lr", 1e-5, 1e-3, log=True) != b.suggest_float("lr", 1e-5, 1e-3, log=True)


def test_a_trial_is_not_judged_while_its_learning_rate_warms_up(cfg):
    six = cfg.train.model_copy(update={"epochs": 6, "warmup_ratio": 0.18})    # warmup: 1.08 epochs
    assert tuning.still_warming_up(1, six) and not tuning.still_warming_up(2, six)
    three = cfg.train.model_copy(update={"epochs": 3, "warmup_ratio": 0.1})   # warmup ends inside epoch 1
    assert not tuning.still_warming_up(1, three)
