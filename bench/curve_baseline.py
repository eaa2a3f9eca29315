"""The TF-IDF baseline of a text learning curve's points, recomputed with the current baseline (C chosen on
validation: nerflow.textcat.baseline) on the very subsets the curve trained on: the validate stage's folders in the
curve's stage cache. For rows bench/learning_curve.py wrote before the baseline chose its C (C = 1 then).

    python bench/curve_baseline.py --curve bench/results/learning_curve-movies-cpu.jsonl \
        --cache bench/out/curve-cache --out bench/results/learning_curve-movies-baseline-cpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def subsets(cache: Path) -> dict[tuple[float, int | None], Path]:
    """(fraction, sample seed; None for the whole split) -> validate folder, for the text corpora in `cache`."""
    found = {}
    for manifest in sorted((cache / "validate").glob("*/manifest.json")):
        data = json.loads(manifest.read_text())["parts"]["settings"]["data"]
        if not (manifest.parent / "task.json").is_file():
            continue   # not a text-classification folder
        fraction = float(data.get("train_fraction") or 1.0)
        found[(fraction, None if fraction == 1.0 else int(data["sample_seed"]))] = manifest.parent
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curve", type=Path, required=True, help="the rows of bench/learning_curve.py")
    ap.add_argument("--cache", type=Path, required=True, help="the curve's stage cache")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from nerflow.textcat.baseline import tfidf_scores

    folders = subsets(args.cache)
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for line in args.curve.read_text().splitlines():
        row = json.loads(line)
        key = f"{row['fraction']:g}/{row['seed']}"
        folder = folders.get((row["fraction"], None if row["fraction"] == 1.0 else row["seed"]))
        if key in out or folder is None:
            continue
        scores = tfidf_scores(folder, row["seed"])
        out[key] = {"fraction": row["fraction"], "seed": row["seed"], "C": scores["C"],
                    "val_f1": scores["val/f1"], "test_f1": scores["test/f1"],
                    "curve_baseline_test_f1": row.get("baseline_test_f1"), "transformer_test_f1": row["test_f1"]}
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(key, json.dumps(out[key]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
