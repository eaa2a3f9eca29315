"""The first thing every flow a deployment runs does (`nerflow-scheduled`, `nerflow-rerun`, and any later promote,
monitoring or tuning flow): check what the Prefect server handed it (nerflow.deploy_guard), before any file is read.

Parameters are checked in full. The deployment's pull steps and job variables are read back from the server and
checked too, but under a plain `prefect worker` (or `nerflow serve`) they have already been applied when this code
runs: that check catches a deployment that drifted from the project's, it cannot undo a hostile pull step. Only
`nerflow worker` (flows/worker.py) checks them before it starts anything.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from nerflow.deploy_guard import (
    Checked,
    check_job_variables,
    check_monitor_parameters,
    check_parameters,
    check_pull_steps,
    leaf_keys,
    section_keys,
    workdir_roots,
)


@cache
def schema_keys() -> tuple[frozenset[str], frozenset[str]]:
    """(leaf keys, section keys) of every task type's config: an override is checked before the config file (and
    with it the task type) is read, so a key any task type reads passes here and load_config narrows it."""
    from nerflow import task_types

    leaves: set[str] = set()
    sections: set[str] = set()
    for model in task_types.config_types().values():
        leaves |= leaf_keys(model)
        sections |= section_keys(model)
    return frozenset(leaves), frozenset(sections)


def check_flow_run(config: str | None = None, overrides: Sequence[str] | None = None,
                   workdir: str | None = None) -> Checked:
    """Refuse (DeploymentRefused, one line) a run whose parameters, pull steps or job variables are not what the
    worker allows; return the checked working directory and config path."""
    roots = workdir_roots(os.environ, Path.cwd())
    leaves, sections = schema_keys()
    checked = check_parameters(config, overrides, workdir, cwd=Path.cwd(), roots=roots, known_keys=leaves,
                               sections=sections)
    check_deployment(roots)
    return checked


def check_monitor_run(model: str, source: str, overrides: Sequence[str] | None = None,
                      workdir: str | None = None) -> Checked:
    """The monitoring flow's check_flow_run: its model URI, input path and monitor.* overrides (deploy_guard)."""
    roots = workdir_roots(os.environ, Path.cwd())
    leaves, sections = schema_keys()
    checked = check_monitor_parameters(model, source, overrides, workdir, cwd=Path.cwd(), roots=roots,
                                       known_keys=leaves, sections=sections)
    check_deployment(roots)
    return checked


def check_tune_run(config: str, overrides: Sequence[str] | None, workdir: str | None, space: str | None,
                   study: str | None, numbers: dict) -> Checked:
    """The tuning flow's check_flow_run: its space file, study name and numbers too (nerflow.tune_guard)."""
    from nerflow.tune_guard import check_tune_parameters

    roots = workdir_roots(os.environ, Path.cwd())
    leaves, sections = schema_keys()
    checked = check_tune_parameters(config, overrides, workdir, space, study, numbers, cwd=Path.cwd(), roots=roots,
                                    known_keys=leaves, sections=sections)
    check_deployment(roots)
    return checked


def check_deployment(roots: Sequence[Path]) -> None:
    """The pull steps and job variables of this flow run's deployment, and the flow run's own job variables (a run
    started with `run_deployment(job_variables=...)` carries its own). Nothing to check outside a deployment."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment, flow_run

    deployment_id, run_id = deployment.get_id(), flow_run.get_id()
    if not deployment_id or not run_id:
        return
    with get_client(sync_client=True) as client:
        found = client.read_deployment(deployment_id)
        run = client.read_flow_run(run_id)
    check_pull_steps(found.pull_steps, roots)
    check_job_variables(found.job_variables, f"deployment {found.name}: job_variables")
    check_job_variables(run.job_variables, "the flow run's job_variables")
