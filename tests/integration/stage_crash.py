"""Kill one stage at a named point, then run it again: for tests/integration/test_crash_points.py.

`python stage_crash.py CONTEXT_PKL STAGE POINT`: CONTEXT_PKL is a pickled RunContext. One forked child runs the
stage through the runner (nerflow.prefect_tasks.stage.run_stage, as the flow does) with NERFLOW_FAULT_POINT=POINT
and must die by SIGKILL; a second child runs it again without the switch, as the next `nerflow run` would. Prints
{"killed": bool, "next_status": int}. The parent opens no store, so no child inherits a database connection.
"""
import json
import os
import signal
import sys
from pathlib import Path

import mlflow  # noqa: F401 - the heavy imports once, before the forks
import torch  # noqa: F401
import transformers  # noqa: F401
from stage_probe import fork  # this folder is on sys.path when run as a script


def run_stage(context: Path, stage: str) -> None:
    import pickle

    from nerflow import cache
    from nerflow.prefect_tasks.stage import run_stage as run

    ctx = pickle.loads(context.read_bytes())
    graph = ctx.plan.graph
    upstream = {}
    for name in graph.stage(stage).consumes:
        key = ctx.plan.stages[name].key
        upstream[name] = graph.stage(name).output.load(name, key, cache.lookup(ctx.cfg.cache_dir, name, key))
    run(ctx, stage, upstream)


def main(context: Path, stage: str, point: str) -> int:
    os.environ["NERFLOW_FAULT_POINT"] = point
    _, status = os.waitpid(fork(run_stage, context, stage), 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    del os.environ["NERFLOW_FAULT_POINT"]
    _, next_status = os.waitpid(fork(run_stage, context, stage), 0)
    print(json.dumps({"killed": killed, "next_status": next_status}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
