"""`nerflow worker --pool POOL`: a Prefect process worker that runs only what the project fixed.

A plain `prefect worker` executes what the server's deployment says: its pull steps (any `run_shell_script`,
`git_clone`, `pip_install_requirements`), its job variables (`command` replaces the process, `env` sets LD_PRELOAD
or PYTHONPATH) and its entrypoint; anyone who can edit a deployment on the Prefect server runs code on the worker
before a line of nerflow does. This worker is Prefect's ProcessWorker (same pools, queues, heartbeats,
cancellation) with one step changed: before it starts a flow run's process it reads the deployment and refuses the
run (state Failed, one line naming what and why) unless the entrypoint is one of nerflow's flows, the pull steps are
none or the project's one `set_working_directory` into its roots, and the job variables carry no command,
working_dir, protected or credential-like environment entry (nerflow.deploy_guard.check_worker_run). Then it never
runs the server's pull steps: it starts `python -m prefect.engine` itself, in its checked directory, with the flow's
module path in PREFECT__FLOW_ENTRYPOINT (Prefect's own way to load a flow without storage or pull steps), its own
environment plus only nerflow's environment defaults (flows/console.py ENV_DEFAULTS) from the job variables, and its
roots in NERFLOW_WORKDIR_ROOTS, which the flow checks its parameters against (flows/deploy_checks.py). The hooks
Prefect runs in the worker when a run is cancelled or crashes load the flow from that same module path: a plain
worker loads it through the deployment's current pull steps, in the worker's own process.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import anyio
from prefect.runner._flow_run_executor import FlowRunExecutorContext
from prefect.runner._starter_engine import EngineCommandStarter
from prefect.utilities.processutils import command_to_string, get_sys_executable
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from nerflow.deploy_guard import WORKDIR_ROOTS_ENV, DeploymentRefused, check_worker_run, workdir_roots

# Prefect's worker-type registry warns that `process` now means the class below: in this process, that is the point
warnings.filterwarnings("ignore", message="Type 'NerflowWorker' .* matches existing registered type")


class NerflowWorker(ProcessWorker):
    type = "process"   # it serves the same process pools as `prefect worker start --type process`
    _description = "nerflow's process worker: only nerflow's flows, the project's pull steps, no server command"

    async def run(self, flow_run, configuration: ProcessJobConfiguration, task_status=None) -> ProcessWorkerResult:
        from nerflow.flows.console import ENV_DEFAULTS

        task_status = task_status or anyio.TASK_STATUS_IGNORED
        deployment = await self.client.read_deployment(flow_run.deployment_id) if flow_run.deployment_id else None
        roots = workdir_roots(os.environ, Path.cwd())
        try:
            if deployment is None:
                raise DeploymentRefused("flow run: not a run of a deployment; allowed: runs of nerflow's deployments")
            entrypoint, directory = check_worker_run(
                deployment.entrypoint, deployment.pull_steps,
                [(f"deployment {deployment.name}: job_variables", deployment.job_variables),
                 ("the flow run's job_variables", flow_run.job_variables)], roots, Path.cwd())
        except DeploymentRefused as e:
            return await self._refuse(flow_run, e, task_status)
        env: dict[str, str | None] = {k: v for k, v in (configuration.env or {}).items() if k in ENV_DEFAULTS}
        env[WORKDIR_ROOTS_ENV] = os.pathsep.join(str(r) for r in roots)

        async def resolve_flow(_flow_run) -> Any:   # cancel/crash hooks: the same fixed flow, no pull steps
            from prefect.flows import load_flow_from_entrypoint

            return load_flow_from_entrypoint(entrypoint)

        execution = None
        async with FlowRunExecutorContext() as ctx:
            starter = EngineCommandStarter(
                entrypoint=entrypoint, command=command_to_string([get_sys_executable(), "-m", "prefect.engine"]),
                cwd=directory, env=env, stream_output=configuration.stream_output,
                control_channel=ctx.control_channel)
            executor = ctx.create_executor(flow_run, starter, resolve_flow=resolve_flow, propose_submitting=False)

            async def execute(*, task_status=anyio.TASK_STATUS_IGNORED) -> None:
                nonlocal execution
                execution = await executor.submit(task_status=task_status)

            async with anyio.create_task_group() as group:
                handle = await group.start(execute)
                if handle.pid is None:
                    raise RuntimeError("Flow run process has no PID")
                task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))

    async def _refuse(self, flow_run, error: DeploymentRefused, task_status) -> ProcessWorkerResult:
        """The run ends Failed with the one line; nothing was started (status 0: Prefect would call a non-zero
        status a crash of the infrastructure)."""
        from prefect.states import Failed
        from prefect.utilities.engine import propose_state

        self.get_flow_run_logger(flow_run).error("refused by nerflow worker: %s", error)
        print(f"error: flow run {flow_run.name} ({flow_run.id}) refused: {error}", file=sys.stderr, flush=True)
        await propose_state(self.client, Failed(message=f"refused by nerflow worker: {error}"),
                            flow_run_id=flow_run.id)
        task_status.started(0)
        return ProcessWorkerResult(status_code=0, identifier="refused")


def start(pool: str, queues: list[str], name: str | None, limit: int | None) -> None:
    """Poll `pool` (its `queues`; all by default) until stopped, as `prefect worker start --pool POOL` does."""
    async def main() -> None:
        async with NerflowWorker(work_pool_name=pool, work_queues=queues or None, name=name, limit=limit) as worker:
            await worker.start()

    anyio.run(main)
