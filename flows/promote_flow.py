"""`nerflow-promote`: the move of an alias the gate accepted in auto mode, run by a worker that holds the promoter's
credentials, so that the accounts pipeline runs use never need the right to move @champion.

On a team whose MLflow server enforces roles (infra/mlflow-roles), the run account may register and tag versions but
not move a protected alias. With `NERFLOW_PROMOTE_DEPLOYMENT` (`nerflow-promote/promoter` in the team's run.env) in a
run's environment, the promote stage in auto mode gates as always, tags an accepted version `accepted, handed to the
promoter` with the champion it was compared with and its evidence (tasks/champion.py), and then, holding no lock,
submits a run of that deployment and ends: nothing waits for the promoter. The deployment's worker (`nerflow worker
--pool nerflow-promote --promote`, started with the promoter's credentials) moves the alias through the crash-safe
history path (tasks/approval.py `promote_handed_over`), the history naming the promoter's MLflow user; it refuses a
version the gate did not hand over, or one whose champion moved since the gate compared them.

The flow's parameters (a model name, a version, an alias) are editable by anyone with the shared Prefect login, as
is submitting a run: they can only ask for a move the gate already decided on the registry, which the promoter's
worker re-reads under the promotion lock. A run of this flow that finds the version already on the alias has nothing
to do and completes (a resubmission after a crash is harmless).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from prefect import flow

from nerflow.flows import interrupts
from nerflow.prefect_tasks.promote_handover import DEFAULT_DEPLOYMENT, FLOW_NAME

log = logging.getLogger("nerflow.promote")
ENTRYPOINT = "nerflow.flows.promote_flow.promote_accepted"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,255}$")
_VERSION = re.compile(r"^[0-9]{1,9}$")


def check_request(model_name: str, version: str, alias: str) -> None:
    """Parameters from the Prefect server: a registered model's name, a version number, an alias name."""
    from nerflow.deploy_guard import DeploymentRefused

    for key, value, pattern in (("model_name", model_name, _NAME), ("version", version, _VERSION),
                                ("alias", alias, _NAME)):
        if not isinstance(value, str) or not pattern.match(value):
            raise DeploymentRefused(f"deployment parameter {key}: {str(value)[:40]!r} is not a {key.replace('_', ' ')}")


@flow(name=FLOW_NAME, log_prints=False)
def promote_accepted(model_name: str, version: str, alias: str = "champion") -> str:
    """Move `alias` of `model_name` to `version`, which a gate run in auto mode accepted and handed over."""
    with interrupts.ignored_after_the_body():   # serve's Ctrl-C after the run ended: no traceback
        from nerflow.deploy_guard import workdir_roots
        from nerflow.flows.console import quiet_libraries
        from nerflow.flows.deploy_checks import check_deployment
        from nerflow.prefect_tasks import approval, champion, tracking
        from nerflow.promotion import Refused

        quiet_libraries()
        check_request(model_name, str(version), alias)
        check_deployment(workdir_roots(os.environ, Path.cwd()))
        client = tracking.configure()
        if champion.alias_version(client, model_name, alias) == str(version):
            said = f"{model_name} version {version} is @{alias} already: nothing to do"
            log.info(said)
            return said
        try:
            entry = approval.promote_handed_over(client, model_name, str(version), alias, champion.actor_name())
        except Refused as e:
            log.error("%s", e)
            raise
        said = (f"@{alias} of {model_name} moved from version {entry.from_version or '-'} to {entry.to_version} by "
                f"{entry.actor} (the gate's decision: {entry.reason})")
        log.info(said)
        return said


def apply_deployment(pool: str, name: str = DEFAULT_DEPLOYMENT) -> str:
    """Create or update `nerflow-promote/NAME` on work pool `pool` (no schedule, no parameters of its own); returns
    its id. Promotions queue (limit 1, enqueue): the promotion lock serialises them anyway."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType

    from nerflow.flows.deployments import ensure_pool, job_variables

    with get_client(sync_client=True) as client:
        ensure_pool(client, pool)
    deployment = promote_accepted.to_deployment(
        name=name, work_pool_name=pool, job_variables=job_variables(pool), tags=["nerflow", "promotion"],
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        description="moves an alias the gate accepted in auto mode (nerflow's promote stage submits these runs); "
                    "run by a worker with the promoter's MLflow credentials",
        entrypoint_type=EntrypointType.MODULE_PATH)
    return str(deployment.apply())
