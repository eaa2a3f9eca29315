"""The tuning flow (`nerflow-tune`): an Optuna study whose trials are training runs (flows/trials.py), each a child
run of the study's MLflow run, the study itself in a relational storage of its own (nerflow.tuning
.default_storage, or NERFLOW_TUNE_STORAGE: PostgreSQL in the team setup), so that:

- the same command continues an interrupted study: the finished trials stay finished (`--trials N` counts
  complete and pruned ones), an interrupted trial is enqueued again with its values (its training resumes from
  its checkpoints), one whose process died (kill -9) is found by its host (pid gone) or by Optuna's heartbeat
  (another host) and retried once more at most twice, never left RUNNING;
- several processes (workers of a Prefect work pool, each running this flow) share one study: each asks the
  storage for the next trial, so no trial runs twice, and they stop together at N.

Before the search, the config as given (the defaults) runs as the trial `defaults`: the baseline the best trial is
compared with, cached like any pipeline run.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Cancelled

from nerflow import faults, tuning
from nerflow.config import load_config
from nerflow.flows import interrupts
from nerflow.flows.study_storage import finished, finished_states, make_storage, repair
from nerflow.progress import TrainingInterrupted

log = logging.getLogger("nerflow.tune")



@dataclass(frozen=True)
class StudyResult:
    study: str
    storage: str
    parent_run_id: str
    folder: str                  # the study's local folder: summary, trials table, plots, best config
    finished: int                # complete + pruned trials
    trials: int                  # asked for
    defaults: dict               # {"val_f1", "test_f1", "mlflow_run"}
    best: dict | None            # {"number", "val_f1", "test_f1", "params", "mlflow_run", "overrides"}
    counts: dict                 # per state

    def to_json(self) -> dict:
        return self.__dict__.copy()

    def lines(self) -> list[str]:
        """What a finished (or timed-out) study prints: the defaults against the best trial on validation (and
        test), the best values, where the best config is."""
        counts = ", ".join(f"{n} {state}" for state, n in self.counts.items())
        lines = [f"study {self.study}: {self.finished} of {self.trials} trials finished ({counts}); "
                 f"MLflow run {self.parent_run_id}",
                 f"{'':<16} {'val F1':>7} {'test F1':>7}",
                 f"{'defaults':<16} {self.defaults['val_f1']:>7.4f} {self.defaults['test_f1']:>7.4f}"]
        best = self.best
        if best is None:
            return [*lines, "no trial completed (all pruned or failed): nothing beats the defaults yet"]
        test = f"{best['test_f1']:>7.4f}" if best.get("test_f1") is not None else f"{'-':>7}"
        lines.append(f"{'best (trial ' + str(best['number']) + ')':<16} {best['val_f1']:>7.4f} {test}")
        lines += [f"  {key} = {value:.3g}" if isinstance(value, float) else f"  {key} = {value}"
                  for key, value in best["params"].items()]
        gain = best["val_f1"] - self.defaults["val_f1"]
        lines.append(f"the best trial beats the defaults on validation by {gain:+.4f}" if gain > 0 else
                     f"the defaults were not beaten on validation ({gain:+.4f}): keep them")
        best_yaml = Path(self.folder) / "best.yaml"
        lines.append(f"best config: {best_yaml} (nerflow run {best_yaml}, or nerflow tune ... --register-best)")
        return lines


@flow(name="nerflow-tune", validate_parameters=False)
def tune(config: str, overrides: list[str] | None = None, trials: int = 20, space: str | None = None,
         timeout: float | None = None, study: str | None = None, startup_trials: int | None = None,
         pruner_startup_trials: int = 2, warmup_epochs: int = 1, workdir: str | None = None) -> StudyResult:
    """Run (or continue) the study of `config` + `overrides` over `space` (a YAML file; default: the task type's
    space) until it has `trials` finished trials or `timeout` seconds passed. Parameters are data, so a deployment
    can run it on a work pool's workers (flows/tune_deployments.py): then they are checked first
    (nerflow.tune_guard) and relative paths read from `workdir`. The storage is this process's
    (NERFLOW_TUNE_STORAGE, else ./tune/optuna.db), never a parameter."""
    with interrupts.ignored_after_the_body():   # serve's Ctrl-C after the run ended: no traceback
        import os

        import optuna
        from prefect.runtime import deployment

        if deployment.get_id():   # anyone on the Prefect server can edit these: checked before any file is read
            from nerflow.flows.deploy_checks import check_tune_run

            checked = check_tune_run(config, overrides, workdir, space, study, {
                "trials": trials, "timeout": timeout, "startup_trials": startup_trials,
                "pruner_startup_trials": pruner_startup_trials, "warmup_epochs": warmup_epochs})
            os.chdir(checked.workdir)
        overrides = list(overrides or [])
        cfg = load_config(config, overrides)
        search = tuning.load_space(Path(space) if space else None, cfg)
        tuning.check_space(search, Path(config), overrides, cfg)
        settings = tuning.SearchSettings.for_study(trials, cfg.seed, startup_trials, pruner_startup_trials,
                                                   warmup_epochs)
        name = study or tuning.study_name(cfg, search)
        url = tuning.storage_url()
        optuna.logging.set_verbosity(optuna.logging.WARNING)   # nerflow says what a trial did, once
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        the_study = optuna.create_study(storage=make_storage(url), study_name=name, direction="maximize",
                                        sampler=settings.sampler(), pruner=settings.pruner(), load_if_exists=True)
        from nerflow.prefect_tasks import studies, tracking

        client = tracking.configure()
        flow_run_id = str(flow_run.get_id() or "")
        parent = studies.open_parent(client, cfg, name, f"tune {name}", flow_run_id,
                                     {**settings.as_params(), "tune.study": name, "tune.storage": _safe(url),
                                      "tune.space": str(search.as_data())})
        log.info("study %s (%s): %s", name, _safe(url), settings.describe())
        try:
            repair(the_study)
            defaults = defaults_of(the_study, cfg, parent, flow_run_id)
            remaining = trials - finished(the_study)
            if remaining > 0:
                the_study.optimize(objective(the_study, Path(config), overrides, search, parent, flow_run_id),
                                   n_trials=remaining, timeout=timeout, catch=(),
                                   callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished_states())])
        except (KeyboardInterrupt, TrainingInterrupted) as e:
            studies.close_parent(client, parent, "KILLED", f"interrupted: {e}")
            return Cancelled(message=f"interrupted ({str(e).split('; train again')[0] or 'SIGINT'}): the study "
                                     f"{name} keeps its {finished(the_study)} finished trials")
        except BaseException as e:
            studies.close_parent(client, parent, "FAILED", f"{type(e).__name__}: {e}")
            raise
        result = summarize(the_study, url, parent, Path(config), overrides, search, defaults, trials, cfg)
        studies.close_parent(client, parent, "FINISHED" if result.finished >= trials else "KILLED",
                             "" if result.finished >= trials else f"stopped after {result.finished} of {trials} trials "
                                                                  "(timeout): the same command continues the study")
        return result


def defaults_of(study, cfg, parent: str, flow_run_id: str) -> dict:
    """The baseline's scores: from the study's attributes, else trained now. With a team's Prefect server,
    under a lock of the study: several workers starting one study train it once."""
    import contextlib

    from nerflow.prefect_tasks import global_locks

    if study.user_attrs.get("defaults"):
        return study.user_attrs["defaults"]
    lock = global_locks.global_lock(global_locks.limit_name("tune", study.study_name),
                                    what=f"the defaults of study {study.study_name} on another worker") \
        if global_locks.team_prefect_api() else contextlib.nullcontext()
    with lock:
        from optuna import load_study

        again = load_study(study_name=study.study_name, storage=study._storage).user_attrs.get("defaults")
        return again or run_defaults(study, cfg, parent, flow_run_id)


def run_defaults(study, cfg, parent: str, flow_run_id: str) -> dict:
    """The config as given, as trial `defaults`: the baseline of the study (kept in the study's attributes)."""
    from nerflow.flows.trials import run_trial

    log.info("trial defaults: the config as given (the baseline)")
    result = run_trial(cfg, parent, "defaults", flow_run_id)
    defaults = {"val_f1": result.metrics["val/best_f1"], "test_f1": result.metrics["test/f1"],
                "mlflow_run": result.run_id}
    study.set_user_attr("defaults", defaults)
    return defaults


def objective(study, config: Path, overrides: list[str], space: tuning.Space, parent: str, flow_run_id: str):
    """Optuna's objective: the trial's values as overrides of the base config, trained and scored; each epoch's
    validation F1 reported to the pruner, which may stop it (optuna.TrialPruned)."""
    import optuna

    from nerflow.flows.trials import run_trial
    from nerflow.prefect_tasks import liveness

    def run(trial: optuna.Trial) -> float:
        trial.set_user_attr("process", liveness.process_tags())   # who runs it: `repair` after a kill -9
        trial.set_user_attr("flow_run", flow_run_id)
        params = {d.key: d.suggest(trial) for d in space.dimensions}
        cfg = load_config(config, [*overrides, *space.overrides(params)])
        retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(
            study._storage.get_trial(trial._trial_id))
        log.info("trial %d%s: %s", trial.number, f" (trial {retried} again)" if retried is not None else "",
                 ", ".join(f"{k}={v}" for k, v in params.items()))

        def on_epoch(values: dict[str, float]) -> None:
            epoch, score = int(values["train/epoch"]), values.get(tuning.OBJECTIVE)
            if score is None:
                return
            trial.report(score, epoch)
            # the epoch's checkpoint is on disk and its score in the study, the trial still RUNNING: after a kill the
            # next `nerflow tune` fails it (its process is gone) and runs its values again from that checkpoint
            faults.point("tune.epoch-reported", str(trial.number))
            if not tuning.still_warming_up(epoch, cfg.train) and trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: validation F1 {score:.4f} is below the median of the "
                                         "earlier trials at this epoch")

        try:
            result = run_trial(cfg, parent, str(trial.number), flow_run_id, on_epoch)
        except optuna.TrialPruned as e:
            log.info("trial %d pruned: %s", trial.number, e)
            raise
        except (KeyboardInterrupt, TrainingInterrupted):
            trial.set_user_attr("interrupted", True)
            raise
        trial.set_user_attr("mlflow_run", result.run_id)
        trial.set_user_attr("test_f1", result.metrics["test/f1"])
        log.info("trial %d: validation F1 %.4f%s", trial.number, result.metrics["val/best_f1"],
                 " (trained before: reused)" if result.reused else "")
        return result.metrics["val/best_f1"]

    return run


def summarize(study, url: str, parent: str, config: Path, overrides: list[str], space: tuning.Space,
              defaults: dict, trials: int, cfg) -> StudyResult:
    """The study's record (tasks/studies.log_study) and what the command prints."""
    from nerflow.prefect_tasks import studies, tracking

    result = result_of(study, url, parent, space, defaults, trials)
    best_overrides = result.best["overrides"] if result.best else []
    best_cfg = load_config(config, [*overrides, *best_overrides]) if result.best else None
    studies.log_study(tracking.configure(), parent, study, space.as_data(), defaults, best_cfg,
                      [*overrides, *best_overrides], Path(result.folder))
    from nerflow.prefect_tasks import artifacts

    artifacts.publish_lines(study.study_name, "study", result.lines())   # the flow run's page in the Prefect UI
    return result


def result_of(study, url: str, parent: str, space: tuning.Space, defaults: dict | None, trials: int) -> StudyResult:
    """What the study holds now: its best complete trial, the defaults, the count per state."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best_trial = max(complete, key=lambda t: t.value) if complete else None
    best = None if best_trial is None else {
        "number": best_trial.number, "val_f1": best_trial.value, "test_f1": best_trial.user_attrs.get("test_f1"),
        "params": best_trial.params, "mlflow_run": best_trial.user_attrs.get("mlflow_run"),
        "overrides": space.overrides(best_trial.params)}
    states = [STATE_WORDS.get(t.state.name, t.state.name.lower()) for t in study.get_trials(deepcopy=False)]
    return StudyResult(study.study_name, _safe(url), parent, str(tuning.study_folder(study.study_name)),
                       finished(study), trials, defaults or study.user_attrs.get("defaults") or {}, best,
                       {s: states.count(s) for s in sorted(set(states))})


STATE_WORDS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "waiting"}


def _safe(url: str) -> str:
    from nerflow import redact

    return redact.text(url)

