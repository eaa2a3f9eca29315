"""Learning curves for docs/benchmarks.md ("Learning curves"): `nerflow curve`'s flow, one (fraction, seed) point
per call, each point a JSON line of --out written when it completes; points already in --out are skipped, so the
command continues where the last session stopped (a curve takes hours on 2 cores).

    .venv/bin/python bench/learning_curve.py --config configs/conll2003.yaml --out bench/results/curve_conll.jsonl \
        --fractions 0.01 0.05 0.1 0.25 0.5 1.0 --seeds 42 7 13 -- data.dir=../shared/data/conll2003
    .venv/bin/python bench/learning_curve.py --config configs/movie_reviews.yaml --baseline ... \
        -- data.dir=../shared/data/movie_reviews tokenize.long_documents=head_tail
    .venv/bin/python bench/learning_curve.py --out FILE --table      # the markdown table of FILE

MLflow and the stage cache live under bench/out/ (git-ignored); the rows are the record.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def done(out: Path) -> set[tuple[float, int]]:
    if not out.exists():
        return set()
    return {(r["fraction"], r["seed"]) for r in (json.loads(line) for line in out.read_text().splitlines()
                                                 if line.strip())}


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'bench' / 'out' / 'curve-mlruns' / 'mlflow.db'}")
    (ROOT / "bench" / "out" / "curve-mlruns").mkdir(parents=True, exist_ok=True)
    from nerflow.flows.curve_flow import curve
    from nerflow.flows.prefect_server import prefect_api

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    overrides = [*args.overrides, f"cache_dir={ROOT / 'bench' / 'out' / 'curve-cache'}"]
    with prefect_api():
        for fraction in args.fractions:
            for seed in args.seeds:
                if (fraction, seed) in done(out):
                    print(f"skip {fraction:g}/seed {seed}: in {out}", flush=True)
                    continue
                started = time.perf_counter()
                result = curve(args.config, [*overrides, f"seed={seed}"], [fraction], seeds=1,
                               baseline=args.baseline)
                (row,) = result.rows
                row = {**row, "wall_seconds": round(time.perf_counter() - started, 1), "config": args.config,
                       "overrides": args.overrides, "machine": f"{platform.machine()} {os.cpu_count()} cpus"}
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def table(out: Path) -> None:
    """Per fraction: examples, test score mean and spread (min-max) over seeds, the baseline's, minutes per point."""
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    baseline = any(r.get("baseline_test_f1") is not None for r in rows)
    print("| fraction | examples | seeds | test F1 mean | spread | " + ("TF-IDF + LR | " if baseline else "") +
          "train s | min/point |")
    print("|---|---|---|---|---|" + ("---|" if baseline else "") + "---|---|")
    for fraction in sorted({r["fraction"] for r in rows}):
        group = [r for r in rows if r["fraction"] == fraction]
        scores = [r["test_f1"] for r in group]
        line = (f"| {fraction:g} | {round(statistics.mean(r['examples'] for r in group))} | {len(group)} | "
                f"{statistics.mean(scores):.4f} | {min(scores):.4f}-{max(scores):.4f} | ")
        if baseline:
            line += f"{statistics.mean(r['baseline_test_f1'] for r in group):.4f} | "
        train = statistics.mean(r["train_seconds"] or 0 for r in group)
        print(line + f"{train:.0f} | {statistics.mean(r['wall_seconds'] for r in group) / 60:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/conll2003.yaml")
    parser.add_argument("--out", required=True)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 13])
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the markdown table of --out and stop")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.table:
        table(Path(args.out))
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
