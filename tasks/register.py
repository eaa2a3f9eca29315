"""Registration stage: log the fine-tuned model as a servable pyfunc, register a new version, tag it, alias it.

Idempotent: a version is found by its `nerflow.register_key` tag before a new one is made, and a complete stage
output whose version is still there, on the registry it was registered in and with the register key it was
recorded with, means "already registered", nothing new.
All or nothing: the version is created with its tags and description in one registry call; if anything after
it fails (the alias, the stage output, the run's tags), the version is deleted and the alias put back where it was.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model

import nerflow
from nerflow import faults, model_description, model_files, redact, task_types
from nerflow.config import config_hash
from nerflow.models import SERVED_ARTIFACT, weights_sha256
from nerflow.outputs import ADAPTER_ARTIFACT, OUTPUT_FILE, Registered, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import model_page, tracking
from nerflow.prefect_tasks.registration_lock import registration_lock
from nerflow.prefect_tasks.stage import RunContext

log = logging.getLogger("nerflow.register")
# What the served model needs, pinned to what it was trained and tested with.
PIP_REQUIREMENTS = ["mlflow==3.17.2", "torch==2.13.0", "transformers==5.23.0", "tokenizers==0.23.3",
                    "numpy==2.4.6", "pandas==3.1.1", "pydantic==2.14.3", "pyyaml==6.0.3"]
KEY_TAG = "nerflow.register_key"
WEIGHTS_TAG = "nerflow.weights_sha256"
ATTEMPT_TAG = "nerflow.attempt"
CREATED_BY_TAG = "nerflow.created_by"
ADAPTER_TAG = "nerflow.adapter"              # train.adapter: lora: runs:/<run>/adapter, the adapter with its head
ADAPTER_BYTES_TAG = "nerflow.adapter_bytes"
RUNTIME_TAG = "nerflow.runtime"              # what serves it: torch | onnx | onnx-int8 (the export stage's choice)
RUNTIME_REASON_TAG = "nerflow.runtime_reason"
ONNX_REQUIREMENT = "onnxruntime==1.31.1"     # a version served by ONNX Runtime


def log_servable_model(run_id: str, model_dir: str, task: str, extra_requirements: tuple[str, ...] = ()):
    python_model, signature, example = task_types.entry(task, "register").servable()
    # MLflow files the logged model under the *active* experiment, not the run's (default: experiment 0, whose
    # artifacts go to ./mlruns of whatever the working directory is): point it at the run's experiment.
    mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
    # MLflow nags about type hints (we give an explicit signature) and about cloudpickle (the model pickles by
    # reference to its nerflow serving module, which travels with it in code_paths).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
        return Model.log(artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id,
                         python_model=python_model, artifacts={SERVED_ARTIFACT: model_dir},
                         code_paths=[str(Path(nerflow.__file__).parent)],
                         pip_requirements=[*PIP_REQUIREMENTS, *extra_requirements],
                         signature=signature, input_example=example)


def _not_found(e: MlflowException) -> bool:
    return e.error_code == "RESOURCE_DOES_NOT_EXIST"


def newest_version(client: MlflowClient, name: str, tags: dict[str, str], run_id: str | None = None):
    """The newest live version of `name` with these tag values (and, if given, made by this MLflow run), or None.
    Registry errors propagate: answering "none" on a failed search would register a duplicate."""
    query = " and ".join([f"name = '{name}'", *(f"tag.`{k}` = '{v}'" for k, v in tags.items()),
                          *([f"run_id = '{run_id}'"] if run_id else [])])
    try:   # the newest first: one page of one version, however many match
        found = client.search_model_versions(query, max_results=1, order_by=["version_number DESC"])
    except MlflowException as e:
        if _not_found(e):
            return None
        raise
    return found[0] if found else None


def find_version(client: MlflowClient, name: str, key: str, run_id: str | None = None, attempt: int | None = None):
    """The newest version registered under this register key (and, if given, by this attempt of this MLflow run:
    a rerun continues its MLflow run, so the run id alone would find the version an earlier attempt made)."""
    return newest_version(client, name, {KEY_TAG: key, **({ATTEMPT_TAG: str(attempt)} if attempt else {})}, run_id)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        version = client.get_registered_model(name).aliases.get(alias)    # an int from some stores
    except MlflowException as e:
        if _not_found(e):
            return None
        raise
    return None if version is None else str(version)


class Undo:
    """What this registration changed in the registry, to put back if a later step fails."""

    def __init__(self, client: MlflowClient, name: str):
        self.client, self.name = client, name
        self.created: str | None = None
        self.alias: tuple[str, str | None] | None = None    # (alias, the version it pointed at before, or None)

    def move_alias(self, alias: str, version: str) -> None:
        # remember first: a move that half-happened is put back as well
        self.alias = (alias, alias_version(self.client, self.name, alias))
        self.client.set_registered_model_alias(self.name, alias, version)

    def rollback(self) -> None:
        if self.alias is not None:
            alias, previous = self.alias
            current = alias_version(self.client, self.name, alias)
            if previous is None and current is not None:
                self.client.delete_registered_model_alias(self.name, alias)
            elif previous is not None and current != previous:
                self.client.set_registered_model_alias(self.name, alias, previous)
        if self.created is not None:
            self.client.delete_model_version(self.name, self.created)


@contextlib.contextmanager
def all_or_nothing(client: MlflowClient, name: str) -> Iterator[Undo]:
    """On any failure inside, undo what was changed and re-raise the first error, not a cleanup's."""
    undo = Undo(client, name)
    try:
        yield undo
    except BaseException:
        if undo.created is not None or undo.alias is not None:
            log.error("registration failed after changing the registry (%s version %s): undoing it", name,
                      undo.created or "-")
            try:
                undo.rollback()
            except Exception as cleanup:  # noqa: BLE001 - the first error is the one to report
                log.warning("could not undo the registration of %s version %s (%s: %s); check the registry",
                            name, undo.created, type(cleanup).__name__, cleanup)
        raise


def create_version(client: MlflowClient, undo: Undo, name: str, run_id: str, model_dir: str, tags: dict,
                   description: str, task: str, champion_alias: str = "champion",
                   extra_requirements: tuple[str, ...] = ()) -> str:
    """Log + register with tags and description in one call (a version never exists half-tagged)."""
    info = log_servable_model(run_id, model_dir, task, extra_requirements)
    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if not _not_found(e):
            raise
        # the page says what the model is for from the start; every move of @champion rewrites it (model_page)
        first = model_page.about("1", tags)
        client.create_registered_model(name, description=model_description.render(name, champion_alias, first, []))
    version = client.create_model_version(name, source=info.model_uri, run_id=run_id, tags=tags,
                                          model_id=info.model_id, description=description).version
    undo.created = str(version)
    return str(version)


_UNDO: contextvars.ContextVar[Undo] = contextvars.ContextVar("nerflow_register_undo")


@contextlib.contextmanager
def transaction(ctx: RunContext, step: StagePlan) -> Iterator[Undo]:
    """Compute and record as one: if anything fails after the registry changed, the change is undone. Under the
    register key's lock (tasks/registration_lock.py): the look-up of a version with this key and the creation of
    one are a single step across hosts, whatever their promote settings."""
    with registration_lock(ctx.cfg.registry.model_name, step.key), \
            all_or_nothing(tracking.configure(), ctx.cfg.registry.model_name) as undo:
        token = _UNDO.set(undo)
        try:
            yield undo
        finally:
            _UNDO.reset(token)


def still_valid(ctx: RunContext | None, step: StagePlan, entry: Path) -> bool:
    """A complete entry names a version by name and number, and a number means nothing on its own: the entry holds
    only while that version is on the registry it was registered in (another tracking server may hold a version of
    the same name and number: someone else's) and still carries the register key recorded with it. Otherwise (the
    version deleted since, or nerflow pointed at another registry) the stage registers again."""
    try:
        done = json.loads((entry / OUTPUT_FILE).read_text())
        name, version = done["model_name"], str(done["version"])
    except (OSError, ValueError, KeyError):
        return False
    if "registry" in done and done["registry"] != tracking.registry_id():
        return False   # decided without asking any registry
    # An entry written before entries named their registry: the register key is then the only evidence that the
    # version of that name and number is the one this stage made (on another registry it would carry another key).
    expected = done.get("version_key", step.key)
    try:
        found = tracking.configure().get_model_version(name, version)
    except MlflowException as e:   # only "gone" means gone: an unreachable registry must not re-register
        if _not_found(e):
            return False
        raise
    return found.tags.get(KEY_TAG, "") == expected


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    """Register the trained weights. `ctx.force_register`: a new version even when one with the same weights
    exists. Without it, a forced stage (`rerun --from`) whose weights equal an existing version's reuses that
    version and leaves the alias alone."""
    cfg, client, undo = ctx.cfg, tracking.configure(), _UNDO.get()
    name, alias = cfg.registry.model_name, cfg.registry.alias
    trained, validated, exported = upstream["train"], upstream["validate"], upstream.get("export")
    # the folder the version serves: the weights, and with the export stage its runtime.json and chosen ONNX file
    served = exported.served_dir if exported is not None else trained.model_dir
    attempt = tracking.attempt_of(client, ctx.run_id)
    weights = weights_sha256(trained.model_dir)
    # Forced (--force-register, rerun --from) means a new version: only one this attempt made counts.
    existing = find_version(client, name, step.key, *((ctx.run_id, attempt) if step.forced else ()))
    same = newest_version(client, name, {WEIGHTS_TAG: weights}) if step.forced and not ctx.force_register else None
    version_key = step.key   # the register key of the version this output names (still_valid checks it)
    if existing is not None:  # made by an attempt that died before recording it
        version, new, by = existing.version, False, existing.run_id
        undo.move_alias(alias, version)
    elif same is not None:
        version, new, by, version_key = same.version, False, same.run_id, same.tags.get(KEY_TAG, "")
        log.info("weights identical to %s version %s: no new version registered (use --force-register "
                 "for one)", name, version)
    else:
        keys = {s: p.key for s, p in ctx.plan.stages.items()}
        # MLflow 3.17 has no way to set a version's "Created by" (its user_id): no store sets it, and the REST call
        # that creates a version has no field for it. The creator is a tag and a line of the description instead.
        creator, data = tracking.user_name(), tracking.data_name(cfg)
        labels = json.loads((Path(validated.path) / "labels.json").read_text())
        tags = redact.mapping({"data_hash": validated.data_hash, "config_hash": config_hash(cfg),
                "git_commit": tracking.git_state()["git_commit"], "base_model": cfg.model.name_or_path,
                "mlflow_run_id": ctx.run_id, KEY_TAG: step.key,
                "nerflow.task": cfg.task, WEIGHTS_TAG: weights, ATTEMPT_TAG: str(attempt), CREATED_BY_TAG: creator,
                model_page.LABELS_TAG: ",".join(labels)[:4900], model_page.DATA_TAG: data,
                **({"base_model_commit": ctx.plan.model_revision} if ctx.plan.model_revision else {}),
                **({"prefect_flow_run_id": ctx.flow_run_id} if ctx.flow_run_id else {}),   # no empty tags
                **{f"nerflow.{stage}_key": key for stage, key in keys.items()}})
        # what the gate, `predict` and `compare` check the served folder against before loading it (exact: not
        # passed through the masking)
        tags |= model_files.version_tags(served)
        if exported is not None:
            tags |= {RUNTIME_TAG: exported.runtime, RUNTIME_REASON_TAG: exported.reason[:4900]}
        if trained.adapter_dir:   # LoRA: where the adapter the merged weights came from is, and its size
            tags |= {ADAPTER_TAG: f"runs:/{ctx.run_id}/{ADAPTER_ARTIFACT}",
                     ADAPTER_BYTES_TAG: str(trained.summary.get("adapter_bytes", ""))}
        description = redact.text(f"{cfg.task} fine-tuned from {cfg.model.name_or_path} on {data} (data "
                                  f"{validated.data_hash[:12]}) by MLflow run {ctx.run_id}; registered by {creator}")
        onnx = (ONNX_REQUIREMENT,) if exported is not None and exported.runtime.startswith("onnx") else ()
        version, new, by = create_version(client, undo, name, ctx.run_id, served, tags, description, cfg.task,
                                          cfg.promote.alias, onnx), True, ctx.run_id
        # a version with all its tags, no alias, no stage output: the next run finds it by its key (above)
        faults.point("register.version-created")
        undo.move_alias(alias, version)
    # alias moved, no stage output: the next run finds the version by its key and moves the alias again (a no-op)
    faults.point("register.alias-moved")
    write_fields(out, {"model_name": name, "version": int(version), "alias": alias, "registered_by_run": by,
                       "new_version": new, "registry": tracking.registry_id(), "version_key": version_key})


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Registered) -> Registered:
    if output.reused:
        output = dataclasses.replace(output, new_version=False)
        log.info("already registered: %s version %s (run %s); nothing new to register", output.model_name,
                 output.version, output.registered_by_run)
    elif output.new_version:
        log.info("registered %s version %s with alias @%s", output.model_name, output.version, output.alias)
    tracking.log_tags(tracking.configure(), ctx.run_id, {"registered_model": output.model_name,
                                                         "registered_version": output.version})
    return output
