"""One training trial of a study or a learning curve: the pipeline's stages up to `evaluate` (nerflow.tuning
.TRIAL_STAGES; never register or promote), each through its adapter as in a pipeline run (tasks/stage.py), so a
trial reuses what is cached (validate, tokenize, pretrain; a whole trial whose settings an earlier one had) and
leaves what it computed for the next run. Its keys are the pipeline's own: `nerflow tune --register-best` and
`nerflow run` with the best config reuse the trial's training.

Each trial is a new MLflow child run of the study's (or curve's) parent run, never the continuation of another
run: its params are the whole config, its tags the trial's number and the parent.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

from nerflow.config import PipelineConfig
from nerflow.outputs import StageOutput
from nerflow.plan import make_plan
from nerflow.progress import TrainingInterrupted
from nerflow.tuning import TRIAL_STAGES

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "nerflow.trial"          # "defaults", "3", "0.05/seed 13": which point of the parent's study or curve
STATE_TAG = "nerflow.trial.state"    # complete | pruned | failed | interrupted


@dataclass(frozen=True)
class TrialResult:
    run_id: str
    outputs: dict[str, StageOutput]

    @property
    def metrics(self) -> dict[str, float]:
        return self.outputs["evaluate"].metrics

    @property
    def reused(self) -> bool:
        """Nothing was trained: the trial's settings had been trained before."""
        return self.outputs["train"].reused


def run_trial(cfg: PipelineConfig, parent_run_id: str, label: str, flow_run_id: str = "",
              on_epoch: Callable[[dict[str, float]], None] | None = None,
              tags: dict[str, str] | None = None) -> TrialResult:
    """Run the trial's stages in a new child run of `parent_run_id`. An exception from `on_epoch` (a pruned
    trial) ends the trial: its run is marked KILLED with state `pruned` and its training folder (checkpoints) is
    discarded; an interrupt keeps the folder (the retried trial continues from it)."""
    from nerflow.flows.pipeline import run_stage_task
    from nerflow.prefect_tasks import liveness, run_record, tracking
    from nerflow.prefect_tasks.stage import RunContext
    from nerflow.prefect_tasks.train import work_dir

    plan = make_plan(cfg)   # the pipeline's plan: the trial's keys are a pipeline run's keys
    client = tracking.configure()
    run_id = tracking.new_run(client, cfg, "", flow_run_id, {
        PARENT_TAG: parent_run_id, TRIAL_TAG: label, tracking.RUN_NAME_TAG: f"trial {label}",
        # not a pipeline run: `nerflow run` must never continue a trial's run (no logical-run tag)
        tracking.LOGICAL_RUN_TAG: "", **(tags or {})})
    ctx = RunContext(cfg, plan, run_id, flow_run_id, on_epoch=on_epoch)
    outputs: dict[str, StageOutput] = {}
    try:
        with liveness.heartbeat(client, run_id), run_record.run_log(client, run_id):
            for stage in plan.graph.stages:
                if stage.name not in TRIAL_STAGES:
                    continue
                upstream = {name: outputs[name] for name in stage.consumes if name in outputs}
                outputs[stage.name] = run_stage_task.with_options(name=f"{stage.name} ({label})")(
                    ctx, stage.name, upstream)
    except BaseException as e:
        import optuna

        state = "pruned" if isinstance(e, optuna.TrialPruned) else \
            "interrupted" if isinstance(e, (KeyboardInterrupt, TrainingInterrupted)) else "failed"
        tracking.log_tags(client, run_id, {STATE_TAG: state, "error": f"{type(e).__name__}: {e}"[:5000]})
        client.set_terminated(run_id, "FAILED" if state == "failed" else "KILLED")
        if state == "pruned":   # its partial training will never be continued
            shutil.rmtree(work_dir(plan, cfg), ignore_errors=True)
        raise
    tracking.log_tags(client, run_id, {STATE_TAG: "complete"})
    client.set_terminated(run_id, "FINISHED")
    return TrialResult(run_id, outputs)
