"""The learning-curve flow (`nerflow-curve`): how much labelled data is enough. For each fraction of the training
split and each seed, a trial (flows/trials.py) trains on that seeded subset (`data.train_fraction`,
`data.sample_seed`, and the same `seed` for training: nerflow.subsets) and is scored on the whole test split; for
text classification optionally the TF-IDF + logistic regression baseline on the same subset
(nerflow.textcat.baseline). Every point is a child run of the curve's MLflow run; the table and the plot are logged
there as each point completes, and the same command skips the points done (their child runs finished) and reuses
cached stages for the rest.
"""
from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Cancelled

from nerflow import task_types, tuning
from nerflow.config import ConfigError, flatten, hash_json, load_config
from nerflow.progress import TrainingInterrupted

log = logging.getLogger("nerflow.curve")

FIELDS = ("fraction", "seed", "examples", "val_f1", "test_f1", "baseline_test_f1", "train_seconds",
          "trial_seconds", "mlflow_run")


@dataclass(frozen=True)
class CurveResult:
    name: str
    parent_run_id: str
    folder: str            # the table (curve.csv) and the plot (curve.png)
    rows: list[dict]

    def to_json(self) -> dict:
        return self.__dict__.copy()

    def lines(self) -> list[str]:
        """Per fraction: the examples, the test score's mean and spread over seeds (and the baseline's)."""
        import statistics

        baseline = any(r.get("baseline_test_f1") is not None for r in self.rows)
        lines = [f"{'fraction':>8} {'examples':>8} {'test F1':>7} {'spread':>6}" +
                 (f" {'TF-IDF':>7}" if baseline else "") + f" {'train s':>7}"]
        for fraction in sorted({r["fraction"] for r in self.rows}):
            rows = [r for r in self.rows if r["fraction"] == fraction]
            scores = [r["test_f1"] for r in rows]
            seconds = [r["train_seconds"] for r in rows if r.get("train_seconds") is not None]
            line = (f"{fraction:>8g} {round(statistics.mean(r['examples'] for r in rows)):>8} "
                    f"{statistics.mean(scores):>7.4f} {max(scores) - min(scores):>6.4f}")
            if baseline:
                line += f" {statistics.mean(r['baseline_test_f1'] for r in rows):>7.4f}"
            lines.append(line + (f" {statistics.mean(seconds):>7.1f}" if seconds else f" {'-':>7}"))
        lines.append(f"table {Path(self.folder) / 'curve.csv'}, plot {Path(self.folder) / 'curve.png'}; "
                     f"MLflow run {self.parent_run_id}")
        return lines


def check_fractions(fractions: list[float]) -> list[float]:
    bad = [f for f in fractions if not 0.0 < f <= 1.0]
    if bad or not fractions:
        raise ConfigError(f"--fractions: each must be in (0, 1], got {bad[0] if bad else 'none'}")
    return sorted(set(fractions))


def curve_name(cfg, fractions: list[float], seeds: list[int], baseline: bool) -> str:
    """One curve per (model name, config, points): the same command continues it."""
    keyed = {k: v for k, v in flatten(cfg).items()
             if k not in ("data.train_fraction", "data.sample_seed", "seed", "cache_dir")}
    return f"curve-{cfg.registry.model_name}-" + hash_json(
        {"config": keyed, "fractions": fractions, "seeds": seeds, "baseline": baseline})[:12]


def point_config(config: str, overrides: list[str], fraction: float, seed: int):
    """The point's config: the subset and the training seed. The whole split keeps the config's own sample seed
    (unused, but in the validate key), so the point of the config's seed is the very run `nerflow run` makes."""
    subset = [f"data.train_fraction={fraction}", f"data.sample_seed={seed}"] if fraction < 1.0 else []
    return load_config(config, [*overrides, *subset, f"seed={seed}"])


def check_points(config: str, overrides: list[str], fractions: list[float], seeds: list[int]) -> None:
    """Every (fraction, seed) subset drawn before anything trains: one that loses a class is the error now, not
    after hours of the other points (nerflow.subsets)."""
    from nerflow import data_identity

    cfg = load_config(config, overrides)
    entry = task_types.entry(cfg.task, "validate")
    corpus = data_identity.load_checked(cfg.data, data_identity.identity(cfg.data), entry.load_corpus)
    for fraction in fractions:
        for seed in seeds:
            entry.sample_train(corpus, point_config(config, overrides, fraction, seed).data)


@flow(name="nerflow-curve", validate_parameters=False)
def curve(config: str, overrides: list[str] | None = None, fractions: list[float] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
          seeds: int = 3, baseline: bool = False) -> CurveResult:
    """Train and score every (fraction, seed) point not done yet; log the table and plot as each completes."""
    from nerflow.flows.trials import run_trial
    from nerflow.prefect_tasks import studies, tracking

    overrides = list(overrides or [])
    fractions = check_fractions(list(fractions))
    if seeds < 1:
        raise ConfigError(f"--seeds: at least 1 (got {seeds})")
    cfg = load_config(config, overrides)
    if baseline and "baseline" not in task_types.get(cfg.task).entries:
        raise ConfigError(f"--baseline: the TF-IDF baseline is for texts, not {cfg.task}")
    seed_list = [cfg.seed + i for i in range(seeds)]
    check_points(config, overrides, fractions, seed_list)
    name = curve_name(cfg, fractions, seed_list, baseline)
    client = tracking.configure()
    flow_run_id = str(flow_run.get_id() or "")
    parent = studies.open_parent(client, cfg, name, name, flow_run_id, {
        "curve.fractions": ",".join(map(str, fractions)), "curve.seeds": ",".join(map(str, seed_list)),
        "curve.baseline": str(baseline)})
    folder = tuning.study_folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    rows = done_points(client, parent)
    try:
        for fraction in fractions:
            for seed in seed_list:
                label = f"{fraction:g}/seed {seed}"
                if any(r["fraction"] == fraction and r["seed"] == seed for r in rows):
                    log.info("point %s: done (its child run finished)", label)
                    continue
                started = time.perf_counter()
                result = run_trial(point_config(config, overrides, fraction, seed), parent, label, flow_run_id,
                                   tags={"nerflow.curve.fraction": str(fraction), "nerflow.curve.seed": str(seed)})
                row = {"fraction": fraction, "seed": seed, "examples": result.outputs["validate"].sizes["train"],
                       "val_f1": result.metrics["val/best_f1"], "test_f1": result.metrics["test/f1"],
                       "train_seconds": result.outputs["train"].summary.get("train_seconds"),
                       "trial_seconds": round(time.perf_counter() - started, 1), "mlflow_run": result.run_id}
                if baseline:
                    scores = task_types.entry(cfg.task, "baseline").tfidf_scores(
                        Path(result.outputs["validate"].path), seed)
                    row["baseline_test_f1"] = scores["test/f1"]
                    tracking.log_metrics(client, result.run_id, {"baseline/test_f1": scores["test/f1"],
                                                                 "baseline/val_f1": scores["val/f1"],
                                                                 "baseline/C": scores["C"]})
                tracking.log_metrics(client, result.run_id, {"curve/examples": row["examples"]})
                rows.append(row)
                log.info("point %s: %d examples, test F1 %.4f%s", label, row["examples"], row["test_f1"],
                         f" (TF-IDF baseline {row['baseline_test_f1']:.4f})" if baseline else "")
                write_record(client, parent, rows, folder, cfg)
    except (KeyboardInterrupt, TrainingInterrupted) as e:
        studies.close_parent(client, parent, "KILLED", f"interrupted: {e}")
        return Cancelled(message=f"interrupted ({e or 'SIGINT'}): {len(rows)} points of the curve are done")
    except BaseException as e:
        studies.close_parent(client, parent, "FAILED", f"{type(e).__name__}: {e}")
        raise
    write_record(client, parent, rows, folder, cfg)
    studies.close_parent(client, parent, "FINISHED")
    result = CurveResult(name, parent, str(folder), rows)
    from nerflow.prefect_tasks import artifacts

    artifacts.publish_lines(name, "learning curve", result.lines())
    return result


def done_points(client, parent: str) -> list[dict]:
    """The points an earlier attempt finished: its finished child runs, read back."""
    from nerflow.flows.trials import PARENT_TAG

    exp = client.get_run(parent).info.experiment_id
    rows = []
    for run in client.search_runs([exp], f"tags.`{PARENT_TAG}` = '{parent}' and attributes.status = 'FINISHED'",
                                  max_results=1000):
        m, t = run.data.metrics, run.data.tags
        if "nerflow.curve.fraction" not in t or "curve/examples" not in m:
            continue
        rows.append({"fraction": float(t["nerflow.curve.fraction"]), "seed": int(t["nerflow.curve.seed"]),
                     "examples": int(m["curve/examples"]), "val_f1": m.get("val/best_f1"),
                     "test_f1": m.get("test/f1"), "baseline_test_f1": m.get("baseline/test_f1"),
                     "train_seconds": m.get("train/train_seconds"), "trial_seconds": None,
                     "mlflow_run": run.info.run_id})
    return rows


def write_record(client, parent: str, rows: list[dict], folder: Path, cfg) -> None:
    """`curve.csv` (a row per point) and `curve.png`, here and on the parent run (replaced as points arrive)."""
    from nerflow import plots

    ordered = sorted(rows, key=lambda r: (r["fraction"], r["seed"]))
    with (folder / "curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k) for k in FIELDS} for r in ordered)
    plots.learning_curve_png(ordered, folder / "curve.png",
                             f"test {task_types.get(cfg.task).headline}")
    client.log_artifact(parent, str(folder / "curve.csv"), "curve")
    client.log_artifact(parent, str(folder / "curve.png"), "curve")
