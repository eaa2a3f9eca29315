"""What a deployment may ask of a worker (docs/team.md, "What a deployment may ask of a worker").

Anyone who can reach the Prefect server can edit a deployment's parameters, job variables and pull steps, and start
a run of it. A worker executes what the deployment says, so every value that comes from the server is checked here
before the run reads anything:
- `config`: a file inside the working directory (no `..`, symlinks resolved);
- `overrides`: only leaf keys of the config schema; a path-valued key (data files, model folder, cache) only inside
  the working directory or the worker's roots, so `data.train=~/.ssh/id_rsa` cannot make a data error quote a
  private file;
- `workdir`: only inside the roots the worker is configured with (NERFLOW_WORKDIR_ROOTS, set on the worker; default:
  its own working directory);
- pull steps: none, or the project's one `set_working_directory` into a root (prefect.yaml);
- job variables: no `command` or `working_dir` (they choose what runs where), no environment entry that looks like a
  credential (Prefect stores job variables and shows them in its UI).

Pure: no Prefect, no file is opened (paths are only resolved). The callers are flows/deploy_checks.py (every flow a
deployment runs calls it first) and flows/worker.py (`nerflow worker`, which checks before it starts a process).
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import yaml
from pydantic import BaseModel

from nerflow.config import ConfigError

WORKDIR_ROOTS_ENV = "NERFLOW_WORKDIR_ROOTS"
# Config keys whose value is a location nerflow reads from or writes to. Relative values are resolved against the
# config's own data.dir or the working directory (both chosen by the project), so only `..` and absolute paths can
# leave them.
PATH_KEYS = frozenset({"cache_dir", "data.dir", "data.train", "data.validation", "data.test", "data.hf_dataset",
                       "model.name_or_path"})
SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"
# Words of an environment variable's name (split at `_`) that mark a credential; TOKENIZERS_PARALLELISM is not one.
SECRET_WORDS = frozenset({"PASSWORD", "PASSWD", "PASS", "TOKEN", "TOKENS", "SECRET", "SECRETS", "KEY", "KEYS",
                          "APIKEY", "AUTH", "CREDENTIAL", "CREDENTIALS", "PRIVATE", "SESSION", "COOKIE"})
# Environment entries a deployment may not set: they decide what code runs (PATH, PYTHON*, LD_*, the flow Prefect
# loads) or what a run may read and write (the roots, the stage cache).
# (and who moves an accepted version: the promote deployment of NERFLOW_PROMOTE_DEPLOYMENT).
PROTECTED_ENV = frozenset({WORKDIR_ROOTS_ENV, "NERFLOW_CACHE_DIR", "NERFLOW_PROMOTE_DEPLOYMENT", "PATH",
                           "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "LD_PRELOAD",
                           "LD_LIBRARY_PATH",
                           "PREFECT__FLOW_ENTRYPOINT", "PREFECT__STORAGE_BASE_PATH"})
# Config keys a deployment parameter may not set, with why: each lifts a safety check (scoring a version whose files
# carry no verified hash, or pickled weights; a person's approval before @champion moves). Whoever may edit a
# deployment on the Prefect server (anyone with the shared Prefect login) may not switch it off; the config file in
# the worker's working directory still may.
NOT_FROM_DEPLOYMENTS = {
    "promote.trust_unverified": "it lifts the check of a version's files before they are loaded",
    "promote.mode": "it decides whether a person approves a move of the alias",
    "promote.auto": "it decides whether a person approves a move of the alias",
}
URL_WITH_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]+@", re.IGNORECASE)


class DeploymentRefused(ConfigError):
    """A deployment asked for something a worker does not do; the message names the parameter, why, and what is
    allowed. A ConfigError: `nerflow` exits 2 with it and the flow run fails with this one line."""


@dataclass(frozen=True)
class Checked:
    workdir: Path        # resolved: where the run reads relative paths from
    config: Path | None  # resolved, inside workdir


def workdir_roots(environ: Mapping[str, str], cwd: Path) -> tuple[Path, ...]:
    """The directories deployments may name as `workdir`: NERFLOW_WORKDIR_ROOTS (os.pathsep-separated) of the
    worker's environment, else the working directory the run started in (`nerflow serve`'s, `nerflow worker`'s)."""
    listed = [p for p in environ.get(WORKDIR_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return tuple(Path(p).expanduser().resolve() for p in listed) or (cwd.resolve(),)


def leaf_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """`{"train.epochs", "data.train", ...}`: the dotted keys of a config class that hold a value (not a section)."""
    out: set[str] = set()
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out |= leaf_keys(field.annotation, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    # a key still read under its old name (promote.auto, read as promote.mode): overriding it is as safe as before
    return out | {f"{prefix}{name}" for name in getattr(model, "legacy_keys", ())}


def section_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out |= {f"{prefix}{name}"} | section_keys(field.annotation, f"{prefix}{name}.")
    return out


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "...'"


def _has_dotdot(value: str) -> bool:
    return ".." in PurePath(value).parts


def check_parameters(config: str | None, overrides: Sequence[str] | None, workdir: str | None, *, cwd: Path,
                     roots: Sequence[Path], known_keys: Collection[str],
                     sections: Collection[str] = ()) -> Checked:
    """Refuse (DeploymentRefused) a deployment's `workdir`, `config` or `overrides` that would make the run read or
    write outside what the worker allows; return the resolved working directory and config path."""
    roots = tuple(Path(r).resolve() for r in roots)
    where = ", ".join(str(r) for r in roots)
    if workdir:
        if str(workdir).startswith("~"):
            raise DeploymentRefused(f"deployment parameter workdir: {_show(workdir)} starts with '~'; allowed: an "
                                    f"absolute directory inside the worker's roots ({where}; {WORKDIR_ROOTS_ENV} on "
                                    "the worker)")
        resolved = (cwd / workdir).resolve()
        if _has_dotdot(str(workdir)) or not _inside(resolved, roots):
            raise DeploymentRefused(f"deployment parameter workdir: {_show(workdir)} is outside the worker's roots "
                                    f"({where}); allowed: a directory inside them, without '..' (set "
                                    f"{WORKDIR_ROOTS_ENV}, os.pathsep-separated, in the worker's own environment)")
        work = resolved
    else:
        work = cwd.resolve()
        if not _inside(work, roots):
            raise DeploymentRefused(f"deployment parameter workdir: none given and this worker's working directory "
                                    f"{work} is outside its roots ({where}); allowed: a workdir inside them")
    cfg_path = None
    if config is not None:
        if not str(config).strip() or str(config).startswith("~") or _has_dotdot(str(config)):
            raise DeploymentRefused(f"deployment parameter config: {_show(config)} is not a plain path; allowed: a "
                                    f"config file inside the working directory {work}, without '..' or '~'")
        cfg_path = (work / config).resolve()   # an absolute `config` stays absolute; symlinks are followed
        if not _inside(cfg_path, (work,)):
            raise DeploymentRefused(f"deployment parameter config: {_show(config)} resolves to {cfg_path}, outside "
                                    f"the working directory {work}; allowed: a config file inside it")
    for item in overrides or ():
        _check_override(item, work, roots, known_keys, sections)
    return Checked(workdir=work, config=cfg_path)


MONITOR_SECTION = "monitor."


def check_monitor_parameters(model: Any, source: Any, overrides: Sequence[str] | None, workdir: str | None, *,
                             cwd: Path, roots: Sequence[Path], known_keys: Collection[str],
                             sections: Collection[str] = ()) -> Checked:
    """The monitoring flow's parameters (flows/monitor_flow.py): `model` a `models:/` URI (a registered version,
    whose files are verified before they load and whose name the drift event carries; never a folder or a run),
    `input` a file or folder inside the working directory or the worker's roots, `overrides` only `monitor.*` keys
    (the check reads the version's own config; a data key would make it profile other files), `workdir` as for
    every flow."""
    checked = check_parameters(None, overrides, workdir, cwd=cwd, roots=roots, known_keys=known_keys,
                               sections=sections)
    if not isinstance(model, str) or not model.startswith("models:/") or any(c in model for c in "\n\r"):
        raise DeploymentRefused(f"deployment parameter model: {_show(model)} is not a registered model's URI; "
                                "allowed: models:/NAME@ALIAS or models:/NAME/VERSION")
    where = f"the working directory {checked.workdir} or the worker's roots ({', '.join(str(r) for r in roots)})"
    if not isinstance(source, str) or not source.strip() or source == "-" or source.startswith("~") \
            or _has_dotdot(source):
        raise DeploymentRefused(f"deployment parameter input: {_show(source)} is not a plain path; allowed: a file "
                                f"or folder inside {where}, without '..' or '~'")
    resolved = (checked.workdir / source).resolve()
    if not _inside(resolved, (checked.workdir, *(Path(r).resolve() for r in roots))):
        raise DeploymentRefused(f"deployment parameter input: {_show(source)} resolves to {resolved}, outside "
                                f"{where}")
    for item in overrides or ():
        if not str(item).partition("=")[0].strip().startswith(MONITOR_SECTION):
            raise DeploymentRefused(f"deployment parameter overrides: {_show(item)} is not a monitor.* key; "
                                    "allowed: monitor.* keys only (a drift check reads the version's own config)")
    return checked


def _check_override(item: Any, work: Path, roots: tuple[Path, ...], known_keys: Collection[str],
                    sections: Collection[str]) -> None:
    if not isinstance(item, str) or "=" not in item:
        raise DeploymentRefused(f"deployment parameter overrides: {_show(item)} is not key=value; allowed: config "
                                "keys, e.g. train.epochs=1")
    key, _, value = item.partition("=")
    key = key.strip()
    if key in sections:
        raise DeploymentRefused(f"deployment parameter overrides: {key!r} is a section, not a key; allowed: one "
                                f"key at a time ({key}.<key>=value)")
    if key not in known_keys:
        near = difflib.get_close_matches(key, sorted(known_keys), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise DeploymentRefused(f"deployment parameter overrides: {key!r} is not a config key{hint}; allowed: the "
                                "keys of the config schema (docs/cli.md, `nerflow run --help`)")
    if key in NOT_FROM_DEPLOYMENTS:
        raise DeploymentRefused(f"deployment parameter overrides: {key} may not be set by a deployment "
                                f"({NOT_FROM_DEPLOYMENTS[key]}); set it in the config file")
    if key not in PATH_KEYS:
        return
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        return   # not a path at all: load_config refuses it with its own message
    if parsed is None:
        return
    if not isinstance(parsed, str):
        raise DeploymentRefused(f"deployment parameter overrides: {key} must be a path, not {_show(parsed)}")
    allowed = ("; allowed: a relative path without '..', or an absolute one inside the working directory "
               f"{work} or the worker's roots ({', '.join(str(r) for r in roots)})")
    if parsed.startswith("~") or _has_dotdot(parsed):
        raise DeploymentRefused(f"deployment parameter overrides: {key}={_show(parsed)} may leave the working "
                                f"directory{allowed}")
    if Path(parsed).is_absolute() and not _inside(Path(parsed).resolve(), (work, *roots)):
        raise DeploymentRefused(f"deployment parameter overrides: {key}={_show(parsed)} is outside the working "
                                f"directory and the worker's roots{allowed}")


def looks_secret(name: str, value: Any = None) -> bool:
    """An environment entry that holds a credential: a name with a word such as TOKEN, PASSWORD, SECRET, KEY or
    AUTH, or a URL with a user:password@ part."""
    words = {w for w in re.split(r"[^A-Za-z0-9]+", str(name).upper()) if w}
    return bool(words & SECRET_WORDS) or (isinstance(value, str) and bool(URL_WITH_CREDENTIALS.match(value)))


def check_job_variables(job_variables: Mapping[str, Any] | None, where: str = "job_variables") -> None:
    """Refuse job variables a deployment must not carry: a `command` (it replaces the flow run's process) or a
    `working_dir` (where it runs), and environment entries that look like credentials (Prefect stores job variables
    and shows them in its UI: a worker gets credentials from its own environment)."""
    job_variables = job_variables or {}
    for name in ("command", "working_dir"):
        if job_variables.get(name):
            raise DeploymentRefused(f"{where} {name}: {_show(job_variables[name])} is set; allowed: none (the "
                                    f"worker decides what runs and where; the run's directory is its `workdir` "
                                    "parameter)")
    env = job_variables.get("env") or {}
    if not isinstance(env, Mapping):
        raise DeploymentRefused(f"{where} env: {_show(env)} is not a mapping of names to values")
    for name, value in env.items():
        if name in PROTECTED_ENV:
            raise DeploymentRefused(f"{where} env {name}: decides what a run executes or may touch; allowed: only "
                                    f"the worker's own environment sets {name}")
        if looks_secret(name, value):
            raise DeploymentRefused(f"{where} env {name}: looks like a credential, and Prefect stores job variables "
                                    "and shows them in its UI; allowed: no credentials there (give the worker "
                                    f"{name} in its own environment)")


def check_pull_steps(steps: Sequence[Mapping[str, Any]] | None, roots: Sequence[Path]) -> Path | None:
    """The project's pull steps are fixed: none, or one `set_working_directory` into one of `roots` (prefect.yaml).
    Returns that directory (None: no steps); anything else (a git clone, a shell script, a pip install, a directory
    outside the roots) is refused."""
    steps = list(steps or [])
    if not steps:
        return None
    roots = tuple(Path(r).resolve() for r in roots)
    only = steps[0] if len(steps) == 1 and isinstance(steps[0], Mapping) else {}
    spec = only.get(SET_WORKING_DIRECTORY) if len(only) == 1 else None
    directory = spec.get("directory") if isinstance(spec, Mapping) and set(spec) == {"directory"} else None
    if isinstance(directory, str) and Path(directory).is_absolute() and not _has_dotdot(directory) \
            and _inside(Path(directory).resolve(), roots):
        return Path(directory).resolve()
    names = ", ".join(next(iter(s), "?") if isinstance(s, Mapping) else _show(s) for s in steps)
    raise DeploymentRefused(f"deployment pull steps: {names} {_show(steps, 120)} are not the project's; allowed: "
                            f"none, or one {SET_WORKING_DIRECTORY} into the worker's roots "
                            f"({', '.join(str(r) for r in roots)})")


# The flows a nerflow worker runs, as deployments name them (prefect.yaml: a file path; `nerflow schedule` and
# `nerflow serve`: a module path) -> the module path it imports, from the installed nerflow, not from a file the
# deployment chose. A promote, monitoring or tuning flow is added here when it gets a deployment.
ENTRYPOINTS = {
    "flows/scheduled.py:scheduled_pipeline": "nerflow.flows.scheduled:scheduled_pipeline",
    "nerflow.flows.scheduled.scheduled_pipeline": "nerflow.flows.scheduled:scheduled_pipeline",
    "flows/rerun.py:rerun_pipeline": "nerflow.flows.rerun:rerun_pipeline",
    "nerflow.flows.rerun.rerun_pipeline": "nerflow.flows.rerun:rerun_pipeline",
    "nerflow.flows.promote_flow.promote_accepted": "nerflow.flows.promote_flow:promote_accepted",
    "flows/monitor_flow.py:monitor_drift": "nerflow.flows.monitor_flow:monitor_drift",
    "nerflow.flows.monitor_flow.monitor_drift": "nerflow.flows.monitor_flow:monitor_drift",
    "nerflow.flows.tune_flow.tune": "nerflow.flows.tune_flow:tune",
}


def check_worker_run(entrypoint: str | None, pull_steps: Sequence[Mapping[str, Any]] | None,
                     job_variables: Sequence[tuple[str, Mapping[str, Any] | None]], roots: Sequence[Path],
                     cwd: Path) -> tuple[str, Path]:
    """What `nerflow worker` checks before it starts a flow run's process: one of nerflow's flows, the project's
    pull steps, job variables without command, working_dir or credentials (`job_variables`: (where, variables) of
    the deployment and of the flow run). Returns (the module path to import, the directory to run in)."""
    fixed = ENTRYPOINTS.get(entrypoint or "")
    if fixed is None:
        raise DeploymentRefused(f"deployment entrypoint: {_show(entrypoint)} is not one of nerflow's flows; allowed: "
                                f"{', '.join(sorted(ENTRYPOINTS))}")
    directory = check_pull_steps(pull_steps, roots) or cwd.resolve()
    for where, variables in job_variables:
        check_job_variables(variables, where)
    return fixed, directory
