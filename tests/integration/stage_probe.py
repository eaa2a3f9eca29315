"""Run each stage of prepared pipeline runs in a fresh process and record which nerflow modules it imported: what
the stage really executes, measured, for tests/integration/test_code_identity.py to hold the analyser to.

`python stage_probe.py JOB_DIR`. JOB_DIR/jobs.json lists jobs {"name", "context", "stages"}; `context` is a pickled
RunContext whose plan forces every stage. This process imports the heavy libraries the stages use, but no nerflow
module, then forks one child per stage (a fresh process as far as nerflow is concerned: nothing of it is loaded),
in the graph's order so each child finds the outputs its stage consumes; the child runs the stage through the
runner exactly as the flow does (nerflow.prefect_tasks.stage.run_stage) and writes the sorted names of the nerflow
modules in sys.modules to JOB_DIR/<name>-<stage>.json. The jobs (task types) run side by side.
"""
import importlib
import json
import os
import pickle
import sys
import traceback
from pathlib import Path

LIBRARIES = ("numpy", "pandas", "yaml", "pydantic", "torch", "transformers", "tokenizers", "datasets", "mlflow",
             "great_expectations", "seqeval", "sklearn", "matplotlib", "psutil", "tqdm", "huggingface_hub")


def nerflow_modules() -> list[str]:
    return sorted(m for m in sys.modules if m == "nerflow" or m.startswith("nerflow."))


def run_one(context: Path, stage: str, out: Path) -> None:
    with context.open("rb") as f:
        ctx = pickle.load(f)
    from nerflow import cache
    from nerflow.prefect_tasks.stage import run_stage

    graph = ctx.plan.graph
    upstream = {}
    for name in graph.stage(stage).consumes:
        key = ctx.plan.stages[name].key
        upstream[name] = graph.stage(name).output.load(name, key, cache.lookup(ctx.cfg.cache_dir, name, key))
    run_stage(ctx, stage, upstream)
    out.write_text(json.dumps(nerflow_modules()))


def fork(target, *args) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            target(*args)
        except BaseException:  # noqa: BLE001 - report whatever failed, then leave without running atexit
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def run_job(job_dir: Path, job: dict) -> None:
    for stage in job["stages"]:
        _, status = os.waitpid(fork(run_one, job_dir / job["context"], stage,
                                    job_dir / f"{job['name']}-{stage}.json"), 0)
        if status != 0:
            raise SystemExit(f"{job['name']}: stage {stage} failed (status {status})")


def main(job_dir: Path) -> int:
    for name in LIBRARIES:
        importlib.import_module(name)
    assert nerflow_modules() == [], nerflow_modules()
    jobs = json.loads((job_dir / "jobs.json").read_text())
    pids = [fork(run_job, job_dir, job) for job in jobs]
    return max(os.waitpid(pid, 0)[1] for pid in pids)


if __name__ == "__main__":
    sys.exit(1 if main(Path(sys.argv[1])) else 0)
