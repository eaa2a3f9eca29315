"""What a tuning deployment (`nerflow-tune/STUDY`, flows/tune_deployments.py) may ask of a worker, on top of what
every deployment may (nerflow.deploy_guard): `config`, `overrides` and `workdir` as for every flow; `space` a YAML
file inside the working directory (like `config`: it is read and quoted in errors); `study` a plain name (it names
the study in the shared storage and the local folder its files go to); the counts and seconds numbers in range.
The storage is never a parameter: a worker uses its own NERFLOW_TUNE_STORAGE (credentials stay in its
environment), so a deployment cannot point trials at another database. Pure, like deploy_guard."""
from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from nerflow.deploy_guard import Checked, DeploymentRefused, _has_dotdot, _inside, _show, check_parameters

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_TRIALS = 10_000


def check_tune_parameters(config: Any, overrides: Sequence[str] | None, workdir: str | None, space: Any,
                          study: Any, numbers: dict[str, Any], *, cwd: Path, roots: Sequence[Path],
                          known_keys: Collection[str], sections: Collection[str] = ()) -> Checked:
    """Refuse (DeploymentRefused, one line) a tuning run's parameters beyond what the worker allows."""
    checked = check_parameters(config, overrides, workdir, cwd=cwd, roots=roots, known_keys=known_keys,
                               sections=sections)
    if space is not None:
        if not isinstance(space, str) or not space.strip() or space.startswith("~") or _has_dotdot(space):
            raise DeploymentRefused(f"deployment parameter space: {_show(space)} is not a plain path; allowed: a "
                                    f"YAML file inside the working directory {checked.workdir}, without '..' or '~'")
        resolved = (checked.workdir / space).resolve()
        if not _inside(resolved, (checked.workdir,)):
            raise DeploymentRefused(f"deployment parameter space: {_show(space)} resolves to {resolved}, outside "
                                    f"the working directory {checked.workdir}")
    if study is not None and (not isinstance(study, str) or not STUDY_NAME.match(study)):
        raise DeploymentRefused(f"deployment parameter study: {_show(study)} is not a plain name; allowed: letters, "
                                "digits, '.', '_' and '-', at most 128, starting with a letter or digit")
    for name, value in numbers.items():
        if value is None and name in ("timeout", "startup_trials"):
            continue
        kind = float if name == "timeout" else int
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not
                                                                               isinstance(value, int)):
            raise DeploymentRefused(f"deployment parameter {name}: {_show(value)} is not a{'' if kind is int else ' '}"
                                    f"{'n integer' if kind is int else 'number'}")
        low = 0 if name in ("startup_trials", "warmup_epochs", "pruner_startup_trials") else 1
        if not low <= value <= (MAX_TRIALS if name != "timeout" else 30 * 24 * 3600):
            raise DeploymentRefused(f"deployment parameter {name}: {_show(value)} is out of range")
    return checked
