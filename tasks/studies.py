"""MLflow for a study or a learning curve: its parent run (the trials are its child runs, flows/trials.py), the
summary, the plots and the best config as artifacts."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.entities import Param

from nerflow import redact
from nerflow.config import PipelineConfig, resolved_dict
from nerflow.prefect_tasks import tracking

STUDY_TAG = "nerflow.study"        # a study's parent run: the Optuna study's name; a curve's: "curve-<hash>"


def open_parent(client: MlflowClient, cfg: PipelineConfig, study: str, title: str, flow_run_id: str,
                params: dict[str, str]) -> str:
    """The parent run of `study`: the one an earlier, unfinished attempt opened (continued, RUNNING again, this
    process's liveness tags), else a new one with `params` (the sampler and pruner settings, the space)."""
    found = find_parent(client, cfg, study)
    if found is not None:
        run_id = found.info.run_id
        client.update_run(run_id, status="RUNNING")
        tracking.log_tags(client, run_id, tracking.process_tags())
        tracking.clear_tags(client, found, ["error"])
        return run_id
    run_id = tracking.new_run(client, cfg, "", flow_run_id, {STUDY_TAG: study, tracking.RUN_NAME_TAG: title,
                                                             tracking.LOGICAL_RUN_TAG: ""})
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run_id


def find_parent(client: MlflowClient, cfg: PipelineConfig, study: str):
    """The newest parent run of `study` in the config's experiment, or None."""
    exp = client.get_experiment_by_name(cfg.experiment)
    found = [] if exp is None else client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def close_parent(client: MlflowClient, run_id: str, status: str, error: str = "") -> None:
    if error:
        tracking.log_tags(client, run_id, {"error": error[:5000]})
    client.set_terminated(run_id, status)


def log_study(client: MlflowClient, run_id: str, study, space_data: dict, defaults: dict | None,
              best_cfg: PipelineConfig | None, best_overrides: list[str], out: Path) -> None:
    """The study's record on its parent run: `study/trials.csv` (every trial: number, state, value, params,
    seconds), `study/summary.json`, the optimisation-history and parallel-coordinate plots, the space, and the best
    config (`best/config.yaml`, `best/overrides.txt`); metrics `tune/best_val_f1`, `tune/defaults_val_f1`,
    `tune/trials_<state>`. The same files are left in `out` (the study's local folder)."""
    import optuna

    out.mkdir(parents=True, exist_ok=True)
    states = [t.state.name.lower() for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    summary = {"study": study.study_name, "trials": {s: states.count(s) for s in sorted(set(states))},
               "best": None if best is None else {"number": best.number, "val_f1": best.value,
                                                  "params": best.params, "mlflow_run": best.user_attrs.get(
                                                      "mlflow_run"), "test_f1": best.user_attrs.get("test_f1")},
               "defaults": defaults, "space": space_data}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "space.yaml").write_text(yaml.safe_dump(space_data, sort_keys=False))
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration", "user_attrs"))
    frame.to_csv(out / "trials.csv", index=False)
    for name, draw in (("optimization_history", _history), ("parallel_coordinate", _parallel)):
        png = out / f"{name}.png"
        with warnings.catch_warnings():   # matplotlib on a dimension every trial gave one value: harmless
            warnings.simplefilter("ignore", UserWarning)
            drawn = draw(study, png)
        if drawn:
            client.log_artifact(run_id, str(png), "study")
    for name in ("summary.json", "trials.csv", "space.yaml"):
        client.log_artifact(run_id, str(out / name), "study")
    if best_cfg is not None:
        (out / "best.yaml").write_text(yaml.safe_dump(redact.mapping(resolved_dict(best_cfg)), sort_keys=False))
        (out / "best-overrides.txt").write_text("\n".join(best_overrides) + "\n")
        client.log_artifact(run_id, str(out / "best.yaml"), "best")
        client.log_artifact(run_id, str(out / "best-overrides.txt"), "best")
    metrics = {f"tune/trials_{s}": n for s, n in summary["trials"].items()}
    if best is not None:
        metrics["tune/best_val_f1"] = best.value
    if defaults and defaults.get("val_f1") is not None:
        metrics["tune/defaults_val_f1"] = defaults["val_f1"]
    tracking.log_metrics(client, run_id, metrics)


def _pyplot():
    os.environ.setdefault("MPLBACKEND", "Agg")   # optuna's matplotlib plots draw through pyplot
    import matplotlib.pyplot as plt

    return plt


def _history(study, png: Path) -> bool:
    import optuna

    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return False
    plt = _pyplot()
    ax = optuna.visualization.matplotlib.plot_optimization_history(study)
    ax.set_ylabel("validation F1")
    ax.figure.set_size_inches(8, 4.5)
    ax.figure.tight_layout()
    ax.figure.savefig(png, dpi=100)
    plt.close(ax.figure)
    return True


def _parallel(study, png: Path) -> bool:
    import optuna

    if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) < 2:
        return False   # one line shows nothing about the space
    plt = _pyplot()
    ax = optuna.visualization.matplotlib.plot_parallel_coordinate(study, target_name="validation F1")
    ax.figure.set_size_inches(10, 5)
    ax.figure.tight_layout()
    ax.figure.savefig(png, dpi=100)
    plt.close(ax.figure)
    return True
