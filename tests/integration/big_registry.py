"""A big MLflow registry for tests, built fast, and a count of the calls a command makes to the real stores.

`build(path, sizes)` creates an MLflow sqlite database with MLflow's own SqlAlchemyStore (its schema, its
migrations), then inserts every experiment, run, registered model, version, tag and alias in ONE transaction through
the store's SQLAlchemy session and models: seconds for thousands of rows, where the client API takes a call (and a
commit) per row. Tests copy the file and point MLFLOW_TRACKING_URI at the copy.

`counted_calls()` wraps every public method of the two stores with a counter that calls through: the stores stay
real, only the number of calls each command makes is recorded (outermost calls: a store method calling another
counts once).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

STAGES = ("validate", "tokenize", "train", "evaluate", "register", "promote")
EXPERIMENT = "nerflow-big-registry"


def model_name(i: int) -> str:
    return f"big-{i:03d}"


def stage_keys(name: str, version: int) -> dict[str, str]:
    """The `nerflow.<stage>_key` tags of a version: what `cache prune` protects for an aliased one."""
    return {f"nerflow.{stage}_key": f"{stage}-{name}-{version}" for stage in STAGES}


def test_f1(name: str, version: int) -> float:
    return round((version * 7 + len(name)) % 100 / 100, 2)


def schema(path: Path) -> Path:
    """An empty MLflow database (MLflow's schema and migrations: the slow part, done once for every build)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    store = TrackingStore(f"sqlite:///{path}", (path.parent / "artifacts").as_uri())
    RegistryStore(f"sqlite:///{path}")
    store.engine.dispose()
    return path


def build(path: Path, versions_per_model: list[int], challenger: dict[str, int] | None = None,
          empty: Path | None = None) -> dict:
    """The database at `path`: registered model i (`model_name(i)`) with `versions_per_model[i]` versions, each
    made by its own FINISHED run (metric test/f1, `test_f1`), with stage-key tags (`stage_keys`); @champion on
    every model's newest version and @challenger where `challenger` says (name -> version); `empty`: a copy of
    `schema`'s database to start from. Returns {name: newest version}."""
    import shutil

    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlModelVersionTag,
        SqlRegisteredModel,
        SqlRegisteredModelAlias,
    )
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlLatestMetric, SqlRun, SqlTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    if empty is not None:
        shutil.copy(empty, path)
    uri = f"sqlite:///{path}"
    artifacts = path.parent / "template-artifacts"
    tracking = TrackingStore(uri, artifacts.as_uri())   # creates the schema unless copied
    RegistryStore(uri)
    now, newest = 1_767_225_600_000, {}
    with tracking.ManagedSessionMaker(read_only=False) as session:   # one transaction for every row
        experiment = SqlExperiment(name=EXPERIMENT, artifact_location=(artifacts / "big").as_uri(),
                                   lifecycle_stage="active", creation_time=now, last_update_time=now)
        session.add(experiment)
        session.flush()
        rows = []
        for i, count in enumerate(versions_per_model):
            name = model_name(i)
            rows.append(SqlRegisteredModel(name=name, creation_time=now, last_updated_time=now, description=""))
            for version in range(1, count + 1):
                run_id = uuid.uuid4().hex
                rows += [SqlRun(run_uuid=run_id, name=f"{name}-v{version}", source_type="LOCAL", source_name="",
                                entry_point_name="", user_id="test", status="FINISHED", start_time=now,
                                end_time=now + 1, source_version="", lifecycle_stage="active",
                                artifact_uri=(artifacts / "big" / run_id).as_uri(),
                                experiment_id=experiment.experiment_id),
                         SqlTag(key="nerflow.logical_run", value=f"{name}-{version}", run_uuid=run_id),
                         SqlLatestMetric(key="test/f1", value=test_f1(name, version), timestamp=now, step=0,
                                         is_nan=False, run_uuid=run_id),
                         SqlModelVersion(name=name, version=version, creation_time=now + version,
                                         last_updated_time=now + version, description="", user_id="test",
                                         current_stage="None", source=f"runs:/{run_id}/model", run_id=run_id,
                                         status="READY")]
                tags = {**stage_keys(name, version), "nerflow.register_key": f"register-{name}-{version}",
                        "data_hash": f"data-{version:064d}", "base_model": "/models/tiny-bert"}
                rows += [SqlModelVersionTag(name=name, version=version, key=k, value=v) for k, v in tags.items()]
            rows.append(SqlRegisteredModelAlias(name=name, alias="champion", version=count))
            newest[name] = count
        for name, version in (challenger or {}).items():
            rows.append(SqlRegisteredModelAlias(name=name, alias="challenger", version=version))
        session.add_all(rows)
    tracking.engine.dispose()
    return newest


@contextlib.contextmanager
def counted_calls() -> Iterator[collections.Counter]:
    """A Counter of calls (method name -> count) to the tracking and registry SqlAlchemyStore while inside."""
    import pytest
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    counts: collections.Counter = collections.Counter()
    inside = threading.local()

    def counting(name, method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            outermost = not getattr(inside, "depth", 0)
            if outermost:
                counts[name] += 1
            inside.depth = getattr(inside, "depth", 0) + 1
            try:
                return method(*args, **kwargs)
            finally:
                inside.depth -= 1
        return wrapper

    with pytest.MonkeyPatch.context() as mp:
        for store in (TrackingStore, RegistryStore):
            for name, method in inspect.getmembers(store, inspect.isfunction):
                if not name.startswith("_"):
                    mp.setattr(store, name, counting(name, method))
        yield counts
