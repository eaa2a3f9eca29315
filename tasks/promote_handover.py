"""Handing an accepted version to the promote deployment (flows/promote_flow.py, which says why): which deployment,
from the environment, and submitting a run of it without waiting."""
from __future__ import annotations

import os

FLOW_NAME = "nerflow-promote"
DEPLOYMENT_ENV = "NERFLOW_PROMOTE_DEPLOYMENT"
DEFAULT_DEPLOYMENT = "promoter"      # nerflow-promote/promoter


def deployment_name() -> str | None:
    """`flow/deployment` to hand accepted versions to, from the environment (a worker's own: a deployment may not
    set it, nerflow.deploy_guard); None: the promote stage moves the alias itself."""
    value = (os.environ.get(DEPLOYMENT_ENV) or "").strip()
    if not value:
        return None
    return value if "/" in value else f"{FLOW_NAME}/{value}"


def submit(deployment: str, model_name: str, version: str, alias: str) -> tuple[str, str]:
    """Create a run of the promote deployment (not waiting for it) and return its (name, id); one clear error when
    the deployment does not exist on the Prefect server."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(deployment, parameters={"model_name": model_name, "version": str(version),
                                                     "alias": alias}, timeout=0, as_subflow=False,
                             tags=["nerflow", "promotion"])
    except ObjectNotFound:
        raise _missing(deployment) from None
    return run.name, str(run.id)


def check_exists(deployment: str) -> None:
    """Before the gate writes anything: one clear error when the deployment is not on the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(deployment)
    except ObjectNotFound:
        raise _missing(deployment) from None


def _missing(deployment: str):
    from nerflow.config import ConfigError

    return ConfigError(f"{DEPLOYMENT_ENV}={deployment}: no such deployment on the Prefect server; start the "
                       "promoter's worker (`nerflow worker --pool nerflow-promote --promote`, with the promoter's "
                       f"credentials), which creates it, or unset {DEPLOYMENT_ENV}")
