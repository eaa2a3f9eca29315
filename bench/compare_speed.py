"""Issue 12's targets as an exit code, from one bench/train_speed.py session: nerflow (the documented command's
settings) trains at least TARGET x the recipe's samples/s, and its mean test F1 over the seeds is no more than
0.3 points below the recipe's mean over the same seeds. Prints the per-seed rows and the ratios; exits 1 when a
target is missed.

    python bench/compare_speed.py bench/out/train_speed.json [--target 2.5] [--system nerflow]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

MAX_F1_DROP = 0.003   # 0.3 points of F1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--system", default="nerflow", help="the nerflow row to judge (default: plain `nerflow`)")
    ap.add_argument("--target", type=float, default=None, help="samples/s ratio (default: 2.5 on CPU, 3 on GPU)")
    args = ap.parse_args(argv)
    rows = json.loads(args.results.read_text())["rows"]
    ours = {r["seed"]: r for r in rows if r["system"] == args.system}
    recipe = {r["seed"]: r for r in rows if r["system"] == "recipe"}
    seeds = sorted(set(ours) & set(recipe))
    if not seeds:
        print(f"no seed with both a '{args.system}' and a 'recipe' row in {args.results}", file=sys.stderr)
        return 2
    gpu = "CPU" not in ours[seeds[0]]["device"]
    target = args.target or (3.0 if gpu else 2.5)
    print(f"device: {ours[seeds[0]]['device']}")
    print(f"{'seed':>4}  {'system':<28} {'samples/s':>9} {'tokens/s':>9} {'padding':>7} {'train s':>8} "
          f"{'stage s':>8} {'peak GiB':>8} {'test F1':>7} {'MFU':>6}")
    for seed in seeds:
        for r in (recipe[seed], ours[seed]):
            print(f"{seed:>4}  {r['system']:<28} {r['samples_per_s']:>9.1f} {r['tokens_per_s']:>9.0f} "
                  f"{r['padding_ratio']:>6.2f}x {r['train_seconds']:>8.0f} {r['stage_wall_seconds']:>8.0f} "
                  f"{r['peak_memory_bytes'] / 2**30:>8.1f} {r['test_f1']:>7.4f} {100 * r['mfu']:>5.1f}%")
        print(f"{'':>4}  ratio: samples/s {ours[seed]['samples_per_s'] / recipe[seed]['samples_per_s']:.2f}x, "
              f"tokens/s {ours[seed]['tokens_per_s'] / recipe[seed]['tokens_per_s']:.2f}x, train stage wall "
              f"{recipe[seed]['stage_wall_seconds'] / ours[seed]['stage_wall_seconds']:.2f}x faster")
    ratio = statistics.mean(ours[s]["samples_per_s"] for s in seeds) / \
        statistics.mean(recipe[s]["samples_per_s"] for s in seeds)
    f1_gap = statistics.mean(ours[s]["test_f1"] for s in seeds) - statistics.mean(recipe[s]["test_f1"] for s in seeds)
    speed_ok, f1_ok = ratio >= target, f1_gap >= -MAX_F1_DROP
    print(f"mean samples/s ratio over seeds {seeds}: {ratio:.2f}x (target >= {target:g}x): "
          f"{'met' if speed_ok else 'MISSED'}")
    print(f"mean test F1 {args.system} - recipe: {100 * f1_gap:+.2f} points (target >= {-100 * MAX_F1_DROP:.1f}): "
          f"{'met' if f1_ok else 'MISSED'}")
    return 0 if speed_ok and f1_ok else 1


if __name__ == "__main__":
    sys.exit(main())
