"""What a pipeline run is called in the MLflow UI: its run name and its "Source". Pure: no MLflow, no Prefect.

A run name says what differs between runs at a glance (MLflow's runs table shows little else by default): the base
model's short name, the data's name, the seed (or, for a scheduled run, the schedule's name) and when it started,
e.g. `all-MiniLM-L6-v2 · conll2003 · seed 42 · 12-03 20:41`. MLflow run names may hold spaces and any characters.

The source name is what MLflow's run page shows under "Source" (the tag `mlflow.source.name`). Its UI shows a LOCAL
run's source only from the last `/` on (the file name of a script path), and a JOB run's in full, so a command's
paths are cut to their file names here: `nerflow run configs/quickstart.yaml` would show as `quickstart.yaml`.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePosixPath

SEPARATOR = " · "
GENERIC_STEMS = {"", ".", "train", "training", "data"}   # train file names that say nothing about the data


def model_short_name(name_or_path: str) -> str:
    """`sentence-transformers/all-MiniLM-L6-v2` -> `all-MiniLM-L6-v2`; a local folder -> its name."""
    return PurePosixPath(name_or_path.rstrip("/")).name or name_or_path


def data_name(hf_dataset: str | None, data_dir: str, train: str) -> str:
    """The data's name: a Hugging Face dataset's (its last path part), else the train file's stem when it says
    something (`wnut17_train.conll`), else the data folder's name (`../shared/data/conll2003` -> `conll2003`).
    `data_dir` is best given resolved: `.` has no name of its own."""
    if hf_dataset:
        return PurePosixPath(hf_dataset.rstrip("/")).name or hf_dataset
    stem = PurePosixPath(train.rstrip("/")).stem
    if stem.lower() not in GENERIC_STEMS:
        return stem
    return PurePosixPath(data_dir.rstrip("/")).name or data_dir


def run_name(model: str, data: str, seed: int, started: datetime, schedule: str | None = None) -> str:
    """`model · data · seed N · MM-DD HH:MM` (UTC); a scheduled run names its schedule instead of the seed (the
    schedule's config fixes the seed, and the schedule is what a reader looks for)."""
    which = f"schedule {schedule}" if schedule else f"seed {seed}"
    when = started.astimezone(UTC).strftime("%m-%d %H:%M")
    return SEPARATOR.join([model_short_name(model), data, which, when])


def source_name(argv: list[str], schedule: str | None = None) -> str:
    """`nerflow schedule NAME` for a run a schedule started (a worker or `nerflow serve`, whose own command line is
    Prefect's engine); else the command that started the run with each path cut to its file name (see the module
    docstring): `nerflow run quickstart.yaml train.epochs=1`."""
    if schedule:
        return f"nerflow schedule {schedule}"
    program = PurePosixPath(argv[0]).name if argv and argv[0] else "python"
    if program == "cli.py" or program == "nerflow":   # the console script, or `python -m nerflow.flows.cli`
        program = "nerflow"
    return " ".join([program, *(_short(arg) for arg in argv[1:])])[:500]


def _short(arg: str) -> str:
    """A path to its file name; `key=some/path` to `key=path`; anything without `/` as it is."""
    key, eq, value = arg.partition("=")
    if eq and "/" not in key:
        return f"{key}={_short(value)}" if "/" in value else arg
    if "/" not in arg:
        return arg
    return PurePosixPath(arg.rstrip("/")).name or arg
