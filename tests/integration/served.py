"""Helpers for the served-scorer tests: a pipeline run's stage outputs, and versions registered as nerflow did before
model hashes and the served-scorer protocol (no `nerflow.model_sha256` tag; their bundled nerflow's pyfunc has no
`predict_examples`)."""
from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
from mlflow import MlflowClient

import nerflow
from nerflow import cache, task_types
from nerflow.models import SERVED_ARTIFACT
from nerflow.prefect_tasks import tracking

# what the served pyfunc classes gained with the protocol: deleted from the bundled copy, they are as before it
PROTOCOL = ("predict_examples", "labels", "multi_label")


def stage_output(cfg, run_id: str, stage: str) -> Path:
    """The cache entry a pipeline run used for `stage` (its `stage.<stage>.key` tag)."""
    key = MlflowClient().get_run(run_id).data.tags[f"stage.{stage}.key"]
    found = cache.lookup(Path(cfg.cache_dir), stage, key)
    assert found is not None, f"no complete {stage} entry for {key}"
    return found


def register_before_protocol(name: str, task: str, model_dir: Path, tmp: Path) -> str:
    """Register `model_dir` as a new version of `name`, served by the task's pyfunc class but with bundled nerflow
    code whose class lacks the protocol, as a version registered by an older nerflow is: the served process
    imports the class from the model's own copy. Returns its `models:/` URI."""
    python_model, signature, _ = task_types.entry(task, "register").servable()
    code = tmp / "code" / "nerflow"
    shutil.copytree(Path(nerflow.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
    cls = type(python_model)
    module = code / Path(*cls.__module__.split(".")[1:]).with_suffix(".py")
    module.write_text(module.read_text() + "".join(f"\ndel {cls.__name__}.{a}" for a in PROTOCOL) + "\n")
    client = tracking.configure()
    with mlflow.start_run(experiment_id=tracking.experiment_id(client, "nerflow-legacy-scorer")):
        info = mlflow.pyfunc.log_model(name="model", python_model=python_model,
                                       artifacts={SERVED_ARTIFACT: str(model_dir)}, code_paths=[str(code)],
                                       signature=signature, pip_requirements=[])
    version = mlflow.register_model(info.model_uri, name).version
    return f"models:/{name}/{version}"
