"""A tuning study for docs/benchmarks.md ("A 12-trial study"): `nerflow tune`'s flow on a config (CoNLL-2003 on a
subset by default), one trial per call, each finished trial a JSON line of --out written as it completes, the
defaults first. Trials already in --out are skipped: a new session puts them back into a fresh study (the same
values and scores, as completed trials), so the sampler continues from the same history. Hours on 2 cores.

    .venv/bin/python bench/tune_study.py --out bench/results/tune_conll-cpu.jsonl --trials 12 \
        -- data.dir=../shared/data/conll2003 data.train_fraction=0.1
    .venv/bin/python bench/tune_study.py --out FILE --table

MLflow, the stage cache and the study's sqlite file live under bench/out/ (git-ignored); the rows are the record.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "tune"


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []


def recorded(trial, rows: list[dict]) -> bool:
    """Whether --out holds `trial` already. By its values and state, not its number: a study restored into a fresh
    storage numbers its trials anew (a failed trial is not restored), so a new trial's number can be an old row's."""
    return any(r["trial"] != "defaults" and r.get("params") == trial.params and r.get("state") ==
               trial.state.name.lower() for r in rows)


def next_label(rows: list[dict]) -> str:
    return str(max((int(r["trial"]) for r in rows if r["trial"] != "defaults"), default=-1) + 1)


def restore(study, rows: list[dict]) -> None:
    """The trials of --out that the study (a fresh storage) lacks, added back as finished trials."""
    import optuna

    for row in rows:
        if row["trial"] == "defaults" or any(recorded(t, [row]) for t in study.trials):
            continue
        dists = {k: optuna.distributions.json_to_distribution(v) for k, v in row["distributions"].items()}
        state = optuna.trial.TrialState[row["state"].upper()]
        study.add_trial(optuna.trial.create_trial(
            params=row["params"], distributions=dists, value=row["val_f1"] if state.name == "COMPLETE" else None,
            state=state, intermediate_values={int(k): v for k, v in row.get("epochs", {}).items()},
            user_attrs={"test_f1": row.get("test_f1"), "mlflow_run": row.get("mlflow_run")}))
    if any(r["trial"] == "defaults" for r in rows) and not study.user_attrs.get("defaults"):
        d = next(r for r in rows if r["trial"] == "defaults")
        study.set_user_attr("defaults", {"val_f1": d["val_f1"], "test_f1": d["test_f1"], "mlflow_run": d["mlflow_run"]})


def run(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'mlflow.db'}")
    os.environ["NERFLOW_TUNE_STORAGE"] = f"sqlite:///{OUT / 'optuna.db'}"
    import optuna

    from nerflow.flows.prefect_server import prefect_api
    from nerflow.flows.study_storage import make_storage
    from nerflow.flows.tune_flow import tune
    from nerflow.tuning import SearchSettings

    out = Path(args.out)
    overrides = [*args.overrides, f"cache_dir={OUT / 'cache'}"]
    study_name = "bench-" + out.stem
    study = optuna.create_study(storage=make_storage(os.environ["NERFLOW_TUNE_STORAGE"]), study_name=study_name,
                                direction="maximize", load_if_exists=True)
    restore(study, rows_of(out))
    with prefect_api():
        while True:
            rows = rows_of(out)
            finished = [r for r in rows if r["trial"] != "defaults"]
            if len(finished) >= args.trials:
                break
            started = time.perf_counter()
            # one trial per call, with the settings of an --trials study (a call for N trials would use N's)
            result = tune(args.config, overrides, trials=len(finished) + 1, space=args.space, study=study_name,
                          startup_trials=SearchSettings.for_study(args.trials, 0).startup_trials)
            seconds = round(time.perf_counter() - started, 1)
            study = optuna.load_study(study_name=study_name, storage=os.environ["NERFLOW_TUNE_STORAGE"])
            with out.open("a") as f:
                if not any(r["trial"] == "defaults" for r in rows):
                    d = result.defaults
                    f.write(json.dumps({"trial": "defaults", "val_f1": d["val_f1"], "test_f1": d["test_f1"],
                                        "mlflow_run": d["mlflow_run"], "overrides": args.overrides}) + "\n")
                for t in study.trials:
                    if t.state.name not in ("COMPLETE", "PRUNED") or recorded(t, rows):
                        continue
                    rows.append({"trial": next_label(rows), "state": t.state.name.lower(), "params": t.params})
                    f.write(json.dumps({
                        "trial": rows[-1]["trial"], "state": t.state.name.lower(), "val_f1": t.value,
                        "test_f1": t.user_attrs.get("test_f1"), "params": t.params,
                        "distributions": {k: optuna.distributions.distribution_to_json(v)
                                          for k, v in t.distributions.items()},
                        "epochs": t.intermediate_values, "seconds": seconds,
                        "mlflow_run": t.user_attrs.get("mlflow_run")}) + "\n")
            if len([r for r in rows_of(out) if r["trial"] != "defaults"]) == len(finished):
                raise SystemExit(f"the study ran no new trial ({result.finished} finished): see its log")
            print(f"trial {len(finished)}: {seconds:.0f} s", flush=True)


def table(out: Path) -> None:
    rows = rows_of(out)
    print("| trial | state | val F1 | test F1 | min | values |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        values = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                           for k, v in r.get("params", {}).items())
        test = f"{r['test_f1']:.4f}" if r.get("test_f1") is not None else "-"
        val = f"{r['val_f1']:.4f}" if r.get("val_f1") is not None else "-"
        minutes = f"{r['seconds'] / 60:.1f}" if r.get("seconds") else "-"
        print(f"| {r['trial']} | {r.get('state', 'defaults')} | {val} | {test} | {minutes} | {values} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/conll2003.yaml")
    parser.add_argument("--out", required=True)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--space", help="a space file (default: the task type's)")
    parser.add_argument("--table", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.table:
        table(Path(args.out))
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
