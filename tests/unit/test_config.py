"""Config loading: YAML + `key=value` overrides, errors that name the key, flatten and hash."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from nerflow.config import ConfigError, PipelineConfig, config_hash, flatten, key_settings, load_config, not_in_key
from nerflow.ner.config import NerConfig
from nerflow.textcat.config import TextcatConfig

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def cfg_file(tmp_path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text("experiment: demo\n"
                    "data:\n"
                    "  train: t.txt\n"
                    "  split:\n"
                    "    seed: 7\n"
                    "train:\n"
                    "  epochs: 2\n"
                    "  lr: 0.001\n", encoding="utf-8")
    return path


def test_yaml_values_are_read_and_the_rest_defaults(cfg_file):
    cfg = load_config(cfg_file)
    assert isinstance(cfg, PipelineConfig)
    assert (cfg.experiment, cfg.data.train, cfg.data.split.seed, cfg.train.epochs, cfg.train.lr) == \
        ("demo", "t.txt", 7, 2, 0.001)
    assert cfg.train.batch_tokens == 1024 and cfg.train.batch_size is None and cfg.data.scheme == "iob2" \
        and cfg.data.validation is None


def test_empty_yaml_file_gives_all_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n", encoding="utf-8")
    cfg = load_config(path)
    defaults = NerConfig()
    assert cfg.train == defaults.train and cfg.model == defaults.model and cfg.registry == defaults.registry
    # locations come back absolute, so a logged config means the same from any working directory
    assert cfg.data.dir == Path(".").resolve() and cfg.cache_dir == Path(".cache/nerflow").resolve()
    assert cfg.data.model_copy(update={"dir": Path(".")}) == defaults.data


@pytest.mark.parametrize("override, getter, expected", [
    ("train.epochs=5", lambda c: c.train.epochs, 5),                       # int
    ("train.lr=3e-5", lambda c: c.train.lr, 3e-5),                         # YAML 1.1 reads 3e-5 as a string
    ("train.lr=0.5", lambda c: c.train.lr, 0.5),                           # float
    ("train.lr=auto", lambda c: c.train.lr, "auto"),                       # string
    ("data.split.seed=99", lambda c: c.data.split.seed, 99),               # three levels deep
    ("data.validation=dev.txt", lambda c: c.data.validation, "dev.txt"),   # None -> string
    ("tokenize.max_length=null", lambda c: c.tokenize.max_length, None),   # null
    ("tokenize.max_length=", lambda c: c.tokenize.max_length, None),       # empty value = null
    ("train.group_by_length=false", lambda c: c.train.group_by_length, False),
    ("experiment=my run", lambda c: c.experiment, "my run"),
    (" train.epochs = 4 ", lambda c: c.train.epochs, 4),                   # spaces around key and value
    ("data.train=a=b.txt", lambda c: c.data.train, "a=b.txt"),             # only the first '=' separates
])
def test_override_values_are_parsed_as_yaml(cfg_file, override, getter, expected):
    assert getter(load_config(cfg_file, [override])) == expected


def test_overrides_apply_in_order_and_keep_sibling_keys(cfg_file):
    cfg = load_config(cfg_file, ["train.epochs=5", "train.epochs=6", "model.name_or_path=/models/x"])
    assert cfg.train.epochs == 6
    assert cfg.train.lr == 0.001            # the sibling from the file survives
    assert cfg.model.name_or_path == "/models/x"


def test_override_creates_a_section_missing_from_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\n", encoding="utf-8")
    assert load_config(path, ["evaluate.batch_size=16"]).evaluate.batch_size == 16


@pytest.mark.parametrize("override, key", [
    ("train.epocs=1", "train.epocs"),
    ("trian.epochs=1", "trian"),
    ("data.split.sed=1", "data.split.sed"),
    ("learning_rate=1", "learning_rate"),
])
def test_unknown_key_fails_naming_it(cfg_file, override, key):
    with pytest.raises(ConfigError, match=rf"'{key}' does not exist"):
        load_config(cfg_file, [override])


def test_unknown_key_in_the_file_fails_naming_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epocs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: config key 'train\.epocs' does not exist "
                                          r"\(did you mean 'train\.epochs'\?\)$"):
        load_config(path)


def test_unknown_key_from_an_override_blames_the_override_not_the_file(cfg_file):
    with pytest.raises(ConfigError, match=r"^override train\.epocs=1: config key 'train\.epocs' does not exist "
                                          r"\(did you mean 'train\.epochs'\?\)$"):
        load_config(cfg_file, ["train.epocs=1"])


def test_unknown_section_suggests_the_closest_and_far_misses_suggest_nothing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: x\ndatta:\n  dir: .\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: config key 'datta' does not exist \(did you mean 'data'\?\)"):
        load_config(path)
    far = tmp_path / "far.yaml"
    far.write_text("train:\n  zzzz: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"far\.yaml:2: config key 'train\.zzzz' does not exist$"):
        load_config(far)


def test_a_value_of_a_union_type_is_one_message_with_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\ntrain:\n  epochs: 2\n  lr: fast\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).count("config key 'train.lr'") == 1
    assert str(err.value).startswith(f"{path}:4: config key 'train.lr': ")
    assert "or input should be 'auto'" in str(err.value)


def test_config_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"experiment: x\nregistry:\n  model_name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: not UTF-8 \(byte 0xe9\)"):
        load_config(path)


@pytest.mark.parametrize("override, key", [
    ("train.epochs=abc", "train.epochs"),
    ("train.epochs=0", "train.epochs"),            # PositiveInt
    ("train.epochs=2.5", "train.epochs"),
    ("train.epochs=null", "train.epochs"),
    ("train.lr=fast", "train.lr"),                 # neither a positive float nor 'auto'
    ("train.lr=-1", "train.lr"),
    ("data.scheme=bio", "data.scheme"),
    ("data.split.validation=1.5", "data.split.validation"),
    ("train.device=tpu", "train.device"),
    ("train=3", "train"),
])
def test_wrong_type_or_value_fails_naming_the_key(cfg_file, override, key):
    with pytest.raises(ConfigError, match=rf"config key '{key}':") as err:
        load_config(cfg_file, [override])
    assert "constrained-" not in str(err.value) and "literal[" not in str(err.value)   # pydantic-internal tags


@pytest.mark.parametrize("override", ["train.epochs", "=5", ""])
def test_override_without_key_and_equals_fails(cfg_file, override):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(cfg_file, [override])


def test_override_into_a_value_that_is_not_a_section_fails(cfg_file):
    with pytest.raises(ConfigError, match="override experiment.name: experiment is not a section"):
        load_config(cfg_file, ["experiment.name=x"])


def test_override_with_invalid_yaml_value_fails_naming_the_key(cfg_file):
    with pytest.raises(ConfigError, match="override data.train: value '\\[a' is not valid YAML"):
        load_config(cfg_file, ["data.train=[a"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_path_that_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path)


@pytest.mark.parametrize("text, message", [
    ("train:\n  epochs: [1, 2\n", "not valid YAML"),
    ("train: {epochs: 3\n", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("just a string\n", "top level must be a mapping"),
])
def test_invalid_yaml_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"bad\.yaml(:\d+)?: {message}"):
        load_config(path)


def test_config_is_frozen(cfg_file):
    cfg = load_config(cfg_file)
    with pytest.raises(ValidationError):
        cfg.train.epochs = 10  # type: ignore[misc]


def test_flatten_gives_dotted_keys_with_json_values(cfg_file):
    flat = flatten(load_config(cfg_file))
    assert flat["train.epochs"] == 2
    assert flat["data.split.seed"] == 7
    assert flat["experiment"] == "demo"
    assert flat["data.validation"] is None
    assert flat["data.dir"] == str(Path(".").resolve())   # Path rendered as a string, made absolute
    assert all(not isinstance(v, dict) for v in flat.values())
    assert not any(k.endswith(".") or k.startswith(".") for k in flat)
    assert {"data.split.validation", "tokenize.stride", "registry.alias"} <= flat.keys()


def test_config_hash_is_stable_and_tracks_values(cfg_file):
    a, b = load_config(cfg_file), load_config(cfg_file)
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 64
    # the same values reached through an override hash the same as through the file
    assert config_hash(load_config(cfg_file, ["train.epochs=2"])) == config_hash(a)
    changed = {config_hash(load_config(cfg_file, [o]))
               for o in ["train.epochs=3", "data.split.seed=8", "train.lr=auto", "data.test=t2.txt"]}
    assert config_hash(a) not in changed and len(changed) == 4


def test_config_hash_ignores_yaml_key_order_and_comments(tmp_path):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("seed: 1\ntrain:\n  epochs: 2\n  batch_size: 4\n", encoding="utf-8")
    two.write_text("# comment\ntrain:\n  batch_size: 4\n  epochs: 2\nseed: 1\n", encoding="utf-8")
    assert config_hash(load_config(one)) == config_hash(load_config(two))


def test_quickstart_config_loads():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.data.validation and cfg.data.test


# ---------------------------------------------------------------------------------------------- typed per task type
def test_each_task_type_has_its_own_config_class(tmp_path):
    (tmp_path / "t.yaml").write_text("task: text-classification\ndata:\n  format: jsonl\n")
    (tmp_path / "n.yaml").write_text("task: ner\n")
    assert type(load_config(tmp_path / "t.yaml")) is TextcatConfig
    assert type(load_config(tmp_path / "n.yaml")) is NerConfig
    assert "scheme" not in TextcatConfig.model_fields["data"].annotation.model_fields
    assert "text_column" not in NerConfig.model_fields["data"].annotation.model_fields


@pytest.mark.parametrize("task, override, other", [
    ("text-classification", "data.scheme=bioes", "token-classification"),
    ("text-classification", "tokenize.label_all_subtokens=true", "token-classification"),
    ("token-classification", "data.text_column=body", "text-classification"),
    ("token-classification", "evaluate.calibration_bins=5", "text-classification"),
])
def test_a_key_the_task_does_not_read_is_an_error_naming_it_and_its_reader(tmp_path, task, override, other):
    (tmp_path / "c.yaml").write_text(f"task: {task}\n" + ("data:\n  format: jsonl\n" if "text" in task else ""))
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^override {re.escape(override)}: config key '{re.escape(key)}' is not "
                                          rf"read by {task} \(it is a {other} setting\)"):
        load_config(tmp_path / "c.yaml", [override])


def test_a_misspelt_task_specific_key_suggests_the_closest_one_of_its_task(tmp_path):
    (tmp_path / "c.yaml").write_text("task: text-classification\ndata:\n  format: csv\n  text_colum: body\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4: config key 'data\.text_colum' does not exist \(did you mean "
                                          r"'data\.text_column'\?\)$"):
        load_config(tmp_path / "c.yaml")


def test_a_format_of_another_task_type_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("task: text-classification\ndata:\n  format: conll\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: config key 'data\.format'"):
        load_config(tmp_path / "c.yaml")


def test_an_unknown_task_names_the_key(tmp_path):
    (tmp_path / "c.yaml").write_text("seed: 1\ntask: summarisation\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: config key 'task': unknown task 'summarisation' \(one of "
                                          r"token-classification, text-classification\)"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("fixture, kind", [("resolved_4dfcd5c_token_classification.yaml", NerConfig),
                                           ("resolved_4dfcd5c_text_classification.yaml", TextcatConfig)])
def test_a_resolved_config_logged_before_typed_configs_still_loads_for_a_rerun(fixture, kind):
    """config/resolved.yaml as commit 4dfcd5c logged it holds both task types' keys (at their defaults)."""
    path = FIXTURES / fixture
    with pytest.raises(ConfigError, match="is not read by"):       # as a user's config it is wrong ...
        load_config(path)
    cfg = load_config(path, resolved=True)                         # ... as a logged one it reruns
    assert type(cfg) is kind
    logged = yaml.safe_load(path.read_text())
    kept = {k: v for k, v in logged["data"].items() if k in type(cfg.data).model_fields and k != "dir"}
    assert {k: v for k, v in cfg.data.model_dump(mode="json").items() if k in kept} == kept
    train = cfg.train.model_dump(mode="json")   # keys added since then take their defaults
    assert {k: v for k, v in train.items() if k in logged["train"]} == logged["train"]
    defaults = type(cfg.train)().model_dump(mode="json")   # nested sections (train.lora) as dicts too
    assert {k: v for k, v in train.items() if k not in logged["train"]} == \
           {k: v for k, v in defaults.items() if k not in logged["train"]}


def test_a_resolved_config_with_another_tasks_key_off_its_default_is_an_error_naming_it(tmp_path):
    logged = yaml.safe_load((FIXTURES / "resolved_4dfcd5c_text_classification.yaml").read_text())
    logged["data"]["scheme"] = "bioes"
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(logged, sort_keys=False))
    with pytest.raises(ConfigError, match=r"config key 'data\.scheme' = 'bioes' is a token-classification setting "
                                          r"that text-classification does not read, and not its default \('iob2'\)"):
        load_config(path, resolved=True)


def test_settings_that_cannot_change_an_output_are_marked_and_left_out_of_key_settings(cfg_file):
    marked = not_in_key(NerConfig)
    assert {k for k, why in marked.items() if why == "reporting"} == {
        "train.checkpoint_every", "train.keep_checkpoints", "train.log_every", "train.master_addr",
        "train.master_port", "promote.score_timeout_s"}
    assert {k for k, why in marked.items() if why == "identity"} == {
        "data.dir", "data.train", "data.validation", "data.test", "data.hf_dataset", "data.hf_revision",
        "model.name_or_path", "model.revision", "pretrain.text"}
    cfg = load_config(cfg_file)
    assert "log_every" not in key_settings(cfg.train) and "epochs" in key_settings(cfg.train)
    assert "dir" not in key_settings(cfg.data) and key_settings(cfg.data)["split"] == {"validation": 0.1,
                                                                                         "test": 0.1, "seed": 7}


@pytest.mark.parametrize("overrides, mode", [
    ([], "auto"),
    (["promote.auto=true"], "auto"),
    (["promote.auto=false"], "manual"),                          # the old switch still means what it meant
    (["promote.mode=approval"], "approval"),
    (["promote.auto=false", "promote.mode=manual"], "manual"),   # both given and agreeing
])
def test_promote_mode_reads_the_old_auto_switch(cfg_file, overrides, mode):
    cfg = load_config(cfg_file, overrides)
    assert cfg.promote.mode == mode and cfg.promote.auto == (mode == "auto")
    # the resolved config (and so the promote stage's key) holds the mode only; it loads back to the same mode
    assert "promote.auto" not in flatten(cfg) and flatten(cfg)["promote.mode"] == mode
    assert key_settings(cfg.promote)["mode"] == mode and "auto" not in key_settings(cfg.promote)


@pytest.mark.parametrize("overrides, message", [
    (["promote.auto=false", "promote.mode=approval"],
     r"^override promote\.auto=false: promote\.auto: false and promote\.mode: approval disagree .*set only "
     r"promote\.mode$"),
    (["promote.auto=true", "promote.mode=manual"], r"promote\.auto: true and promote\.mode: manual disagree"),
    (["promote.auto=maybe"], r"promote\.auto must be true or false \(got 'maybe'\)"),
    (["promote.mode=later"], r"config key 'promote\.mode': input should be 'auto', 'manual' or 'approval'"),
])
def test_a_contradicting_or_bad_promote_mode_is_one_error_naming_the_keys(cfg_file, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(cfg_file, overrides)
    assert "\n" not in str(err.value)


def test_promote_mode_and_the_old_auto_switch_are_schema_keys():
    """Known keys (an override of either is one clear error from a deployment: tests/unit/test_deploy_guard.py)."""
    from nerflow.flows.deploy_checks import schema_keys

    leaves, _ = schema_keys()
    assert {"promote.mode", "promote.auto"} <= leaves
