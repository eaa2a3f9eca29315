"""Run one declared stage (nerflow.graph): reuse its output or compute it through its adapter, under the stage key's
lock, then let the adapter record it in MLflow. Every stage runs through `run_stage`, so reuse, force, retries and
locking behave the same for all of them, and a new stage needs only its declaration, library function and adapter.

An adapter is a module of this package with
    compute(ctx, step, upstream, out: Path) -> None    write the output into `out` (its fields: outputs.write_fields)
    record(ctx, step, upstream, output) -> StageOutput  log it to MLflow; return it (computed or reused alike)
and optionally
    still_valid(ctx, step, entry) -> bool               False: a complete entry the world has invalidated since
    transaction(ctx, step) -> context manager           around compute and record (register: all or nothing)
`upstream` holds the outputs of the stages it consumes, by name.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from nerflow import cache, locks
from nerflow.config import PipelineConfig
from nerflow.outputs import StageOutput
from nerflow.plan import Plan, StagePlan
from nerflow.prefect_tasks import artifacts, tracking

log = logging.getLogger("nerflow.stage")


@dataclass(frozen=True)
class RunContext:
    """What every stage of one pipeline attempt shares."""

    cfg: PipelineConfig
    plan: Plan
    run_id: str
    flow_run_id: str = ""
    force_register: bool = False   # a new model version even when one with the same weights exists
    # a tuning trial's listener: called with each epoch's validation values ({"val/f1": ..., "train/epoch": n}) as
    # they reach MLflow; it may raise to stop training (a pruned trial: flows/tune_flow.py)
    on_epoch: Callable[[dict[str, float]], None] | None = None


def adapter_of(plan: Plan, stage: str) -> ModuleType:
    return importlib.import_module(plan.graph.stage(stage).adapter_module)


def run_stage(ctx: RunContext, stage: str, upstream: dict[str, StageOutput]) -> StageOutput:
    """The stage's output for this attempt. A stage the plan found complete is reused; a forced one is recomputed
    whatever exists (its new generation replaces the key's output); a retry of a stage whose output an earlier try
    completed (the fault came after it) does not compute it again. One process computes a key at a time
    (locks.stage_lock): another run that needs the same key waits for it and reuses its output."""
    started = time.perf_counter()
    client = tracking.configure()
    adapter = adapter_of(ctx.plan, stage)
    step = ctx.plan.stages[stage]
    root = Path(ctx.cfg.cache_dir)
    with getattr(adapter, "transaction", _no_transaction)(ctx, step):
        entry = cache.lookup(root, stage, step.key)
        if entry is not None and step.complete and (renewed_outside(ctx, upstream) or (
                hasattr(adapter, "still_valid") and not adapter.still_valid(ctx, step, entry))):
            step = dataclasses.replace(step, complete=False, forced=True)
        reused = step.complete and entry is not None
        if reused:
            log.info("%s: reusing %s (inputs, settings and code unchanged)", stage, entry)
        elif entry is not None and not step.forced:   # written by an earlier try of this task (a Prefect retry)
            log.info("%s: output completed since the plan was made (by an earlier try): %s", stage, entry)
        else:
            entry, reused = compute_once(ctx, adapter, step, upstream)
        locks.note_generation(root, ctx.plan.logical_run, stage, entry.name)
        output_type = ctx.plan.graph.stage(stage).output
        output = adapter.record(ctx, step, upstream, output_type.load(stage, step.key, entry, reused))
        tracking.log_tags(client, ctx.run_id, {f"stage.{stage}": "reused" if reused else "computed",
                                               f"stage.{stage}.key": step.key})
        tracking.log_metrics(client, ctx.run_id, {f"stage/{stage}_seconds": time.perf_counter() - started},
                             step=tracking.attempt_of(client, ctx.run_id))
    artifacts.publish_stage(ctx.cfg.registry.model_name, output, ctx.cfg.task)   # the Prefect UI's view of it
    return output


def renewed_outside(ctx: RunContext, upstream: dict[str, StageOutput]) -> list[str]:
    """Consumed stages whose output names something outside the cache (a model version) and that this attempt
    computed although their key was complete: what they named had gone (a deleted version, another registry), so
    they name something new, and an output computed from the old one (the gate's decision about the old version)
    does not hold for it."""
    return [name for name, out in upstream.items() if ctx.plan.graph.stage(name).external and not out.reused
            and ctx.plan.stages[name].complete]


@contextlib.contextmanager
def _no_transaction(ctx: RunContext, step: StagePlan):
    yield


def compute_once(ctx: RunContext, adapter: ModuleType, step: StagePlan, upstream: dict[str, StageOutput]
                 ) -> tuple[Path, bool]:
    """(the entry, whether it was reused): computed under the stage key's lock, or reused when a concurrent run
    completed it while this one waited."""
    root = Path(ctx.cfg.cache_dir)
    found_before = cache.lookup(root, step.stage, step.key) is not None
    with locks.stage_lock(root, step.stage, step.key, ctx.plan.logical_run) as waited:
        # A forced stage whose output existed before the wait must still be computed: what is there now is that
        # old output, not the other run's.
        entry = cache.lookup(root, step.stage, step.key)
        if waited is not None and entry is not None and not (step.forced and found_before):
            log.info("%s: reusing %s, computed by a concurrent run", step.stage, entry)
            return entry, True
        log.info("%s: computing (key %s)%s", step.stage, step.key, " (forced)" if step.forced else "")
        try:
            with cache.stage_output(root, step.stage, step.key, step.parts, replace=step.forced) as out:
                adapter.compute(ctx, step, upstream, out)
        except BaseException:
            tracking.log_tags(tracking.configure(), ctx.run_id, {"failed_stage": step.stage})
            raise
        return cache.lookup(root, step.stage, step.key), False


def stage_task(**kwargs):
    """`run_stage` as a Prefect task: no Prefect result cache (the stage cache above decides reuse, and verifies
    outputs Prefect cannot), retries with backoff only for transient faults (network, MLflow server). Named per
    stage by the flow (`with_options(name=...)`)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    options = {"name": "stage", "cache_policy": NO_CACHE, "retries": 2, "retry_delay_seconds": [2, 10],
               "retry_condition_fn": tracking.retry_if_transient, **kwargs}
    return task(**options)(run_stage)
