"""`nerflow serve`: one process (a Prefect Runner) that executes the runs of the schedules that have no work pool
(flows/deployments.py) and of the rerun deployment `nerflow-rerun/rerun` (flows/rerun.py), until stopped.

The schedules are registered with the Runner by id only: it neither re-applies them (a re-apply recreates their
schedules) nor pauses them when it stops (`pause_on_shutdown=False`), so a schedule stays active while no process
serves it, and the next `nerflow serve` or a restart picks up the due runs. The rerun deployment has no schedule;
`nerflow serve` creates or updates it (no work pool: it runs in this process's host) so that the Prefect UI shows
its Run form, unless the team deployed it to a work pool (`prefect deploy`, prefect.yaml): then that pool's
workers run reruns and this process leaves it alone.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from nerflow.flows import deployments

log = logging.getLogger("nerflow.schedule")


def serve(names: list[str], limit: int | None = None) -> None:
    """Execute the runs of these schedules (every schedule without a work pool when none are named) and of the
    rerun deployment, until stopped."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    from nerflow.config import ConfigError

    with get_client(sync_client=True) as client:
        schedules = [d for n in names for d in deployments.named(client, n)] if names else \
            [d for d in deployments.list_all(client) if not d.work_pool_name]
        pooled = [d.name for d in schedules if d.work_pool_name]
        if pooled:
            raise ConfigError(f"{', '.join(pooled)} run on a work pool: start `nerflow worker --pool "
                              f"{schedules[0].work_pool_name}` instead, or reschedule without --pool")
        rerun_id, rerun_pool = apply_rerun_deployment(client)
    if not schedules and rerun_id is None:
        raise ConfigError(f"nothing to serve: no schedule without a work pool (create one with `nerflow schedule "
                          f"CONFIG --interval SECONDS`), and reruns run on work pool {rerun_pool}'s workers")
    runner = Runner(name=f"nerflow-serve-{os.getpid()}", pause_on_shutdown=False, limit=limit)
    served = [(d.id, f"{deployments.flow_of(d)}/{d.name}") for d in schedules]
    if rerun_id is not None:
        served.append((rerun_id, rerun_name()))
    for deployment_id, name in served:
        # Runner.add_deployment would apply the deployment again; registering the id only is what serving an
        # existing deployment needs (Prefect 3.8.8's registry; covered by tests/team/test_schedules.py)
        runner._deployment_registry.register_deployment(deployment_id, name)
    what = ", ".join(name for _, name in served)
    reruns = "" if rerun_id is not None else f"; reruns run on work pool {rerun_pool}'s workers"
    log.info("serving %s (Ctrl-C stops; the schedules stay active)%s", what, reruns)
    print(f"serving {what} from {Path.cwd()}{reruns}; Ctrl-C stops serving, the schedules stay active", flush=True)
    asyncio.run(until_stopped(runner))


async def until_stopped(runner) -> None:
    """Run `runner` until Ctrl-C: then Prefect's graceful stop, which cancels the runs in flight (their process is
    signalled and their state set to Cancelled) instead of leaving them Running: a run killed with no final state
    keeps its deployment's concurrency slot (limit 1) until the slot's lease runs out, up to 300 s, and the next due
    runs are cancelled meanwhile. A second Ctrl-C stops at once. (SIGTERM: Prefect's own handler, the same stop.)"""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    started = loop.create_task(runner.start())

    def on_interrupt() -> None:
        if runner.started and not runner.stopping:
            print("stopping: cancelling the runs in flight (Ctrl-C again stops at once)", file=sys.stderr,
                  flush=True)
            loop.create_task(runner.astop())
        else:
            started.cancel()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        await started
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def rerun_name() -> str:
    from nerflow.flows.rerun import DEPLOYMENT_NAME, FLOW_NAME

    return f"{FLOW_NAME}/{DEPLOYMENT_NAME}"


def find_rerun(client):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(rerun_name())
    except ObjectNotFound:
        return None


def apply_rerun_deployment(client):
    """Create or update `nerflow-rerun/rerun` for this process to serve: (its id, None). When it exists on a work
    pool (prefect.yaml), it is left as it is: (None, the pool)."""
    from prefect.deployments.runner import EntrypointType

    from nerflow.flows.rerun import DEPLOYMENT_NAME, rerun_pipeline

    existing = find_rerun(client)
    if existing is not None and existing.work_pool_name:
        return None, existing.work_pool_name
    deployment = rerun_pipeline.to_deployment(
        name=DEPLOYMENT_NAME, tags=["nerflow"], entrypoint_type=EntrypointType.MODULE_PATH,
        description="Continue a failed (or any) pipeline run from a chosen stage, as a new attempt of the same "
                    "MLflow run: nerflow rerun RUN_ID --from STAGE. Runs where `nerflow serve` runs; it says "
                    "before it starts which stages it recomputes there.")
    return deployment.apply(), None


def rerun_line() -> str:
    """Where reruns started from the Prefect UI run: the last line of `nerflow schedule ls`."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = find_rerun(client)
    if found is None:
        return (f"reruns from the Prefect UI: {rerun_name()} is not deployed yet (`nerflow serve` creates it; "
                "`prefect deploy -n rerun` puts it on the work pool of prefect.yaml)")
    where = f"work pool {found.work_pool_name}'s workers" if found.work_pool_name else "`nerflow serve`"
    return f"reruns from the Prefect UI: deployment {rerun_name()}, runs on {where}"
