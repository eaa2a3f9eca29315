"""The processes that run scheduled flows: `nerflow serve` (the schedules served in this process, and the rerun
deployment `nerflow-rerun/rerun` of flows/rerun.py, created here; flows/runner.py) and `nerflow worker` (a Prefect
process worker for a work pool that runs only nerflow's flows; flows/worker.py).

    nerflow serve [NAME ...] [--limit N]
    nerflow worker --pool POOL [--work-queue QUEUE ...] [--name NAME] [--limit N] [--promote]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    from nerflow.flows import deployments, runner

    deployments.require_server()
    try:
        runner.serve(args.names, limit=args.limit)
    except KeyboardInterrupt:
        pass
    print("stopped serving; the schedules stay active: `nerflow serve` again, or a worker, runs what comes due",
          file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import os

    from nerflow.deploy_guard import WORKDIR_ROOTS_ENV, workdir_roots
    from nerflow.flows import deployments, worker

    deployments.require_server()
    roots = ", ".join(str(r) for r in workdir_roots(os.environ, Path.cwd()))
    if args.promote:   # this worker holds the promoter's credentials: it serves the promote deployment
        from nerflow.flows.promote_flow import apply_deployment
        from nerflow.prefect_tasks import tracking
        from nerflow.prefect_tasks.promote_handover import DEFAULT_DEPLOYMENT, DEPLOYMENT_ENV, FLOW_NAME

        apply_deployment(args.pool)
        print(f"deployment {FLOW_NAME}/{DEFAULT_DEPLOYMENT} on pool {args.pool}: this worker moves the versions "
              f"gates hand over ({DEPLOYMENT_ENV}={FLOW_NAME}/{DEFAULT_DEPLOYMENT} in the runs' environment) as "
              f"MLflow user {tracking.user_name()}", flush=True)
    print(f"nerflow worker on pool {args.pool}: runs nerflow's flows from {Path.cwd()}; workdir roots {roots} "
          f"({WORKDIR_ROOTS_ENV}); deployment pull steps are checked, never run; Ctrl-C stops", flush=True)
    try:
        worker.start(args.pool, args.work_queue or [], args.name, args.limit)
    except KeyboardInterrupt:
        pass
    return 0


def add_parsers(sub) -> None:
    serve = sub.add_parser("serve", help="run the scheduled runs of these schedules (all served ones by default) "
                                         "and the reruns started from the Prefect UI (deployment "
                                         "nerflow-rerun/rerun, created here) until stopped; the schedules stay "
                                         "active when it stops")
    serve.add_argument("names", nargs="*")
    serve.add_argument("--limit", type=int, help="at most this many runs at once (default: no limit)")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="a Prefect process worker for a work pool that runs only nerflow's flows "
                                           "and never the deployment's pull steps, command or credentials "
                                           "(docs/team.md); in place of `prefect worker start --pool POOL`")
    worker.add_argument("--pool", required=True, help="the process work pool to poll (created if missing)")
    worker.add_argument("--work-queue", action="append", help="a work queue of the pool (repeatable; default: all)")
    worker.add_argument("--name", help="the worker's name on the Prefect server")
    worker.add_argument("--limit", type=int, help="at most this many runs at once (default: no limit)")
    worker.add_argument("--promote", action="store_true",
                        help="also create or update the deployment nerflow-promote/promoter on this pool: run this "
                             "worker with the promoter's MLflow credentials, and the pipeline runs (whose accounts "
                             "may not move @champion) with NERFLOW_PROMOTE_DEPLOYMENT=nerflow-promote/promoter "
                             "(docs/team.md)")
    worker.set_defaults(func=cmd_worker)
