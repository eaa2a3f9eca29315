"""CoNLL-2003 with the offline MiniLM: sentence context against document context (`tokenize.context`), seeds 42 and 7.

Each row is one `bench/conll2003_nerflow.py` run (the documented command, cold cache, its own work folder under
`--work`) with `seed=<seed> tokenize.context=<context> distill.enabled=false` (the rows compare fine-tuned models;
`distill.enabled=true` among the extra overrides adds the config's student) and any extra overrides. A row is
appended to `--out` (JSON lines) as soon as it is done, and a row already there is skipped. A row cut short (a
session's end) continues where it stopped: its run is continued with `nerflow rerun` (conll2003_nerflow.py --resume:
finished stages reused, training from its last checkpoint) and the row records its `attempts`.

    python bench/conll_context.py                                  # all four rows (hours on 2 cores)
    python bench/conll_context.py --contexts document --seeds 42   # one row
    python bench/conll_context.py --out bench/out/context-slice.jsonl data.limit_train=200 train.epochs=1  # a slice
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def row_name(context: str, seed: int, overrides: list[str]) -> str:
    return " ".join([f"context={context}", f"seed={seed}", *overrides])


def done_rows(out: Path) -> set[str]:
    if not out.exists():
        return set()
    return {json.loads(line)["row"] for line in out.read_text().splitlines() if line.strip()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/conll2003"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/conll_context.jsonl"))
    ap.add_argument("--work", type=Path, default=Path("bench/out/conll_context"))
    ap.add_argument("--contexts", nargs="+", default=["sentence", "document"], choices=["sentence", "document"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 7])
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every row")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for context in args.contexts:
            name = row_name(context, seed, args.overrides)
            if name in done_rows(args.out):
                print(f"skip (done): {name}")
                continue
            # a row's own folder, so rows keep their runs (cold unless an unfinished run is there to continue)
            slug = "-".join([context, f"seed{seed}", *args.overrides])
            result = args.work / re.sub(r"[^A-Za-z0-9_.=-]+", "_", slug) / "result.json"
            result.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(BENCH / "conll2003_nerflow.py"), "--data-dir", str(args.data_dir),
                            "--out", str(result), "--resume", f"seed={seed}", f"tokenize.context={context}",
                            # the rows compare fine-tuned models: no student unless asked (distill.enabled=true)
                            "distill.enabled=false", *args.overrides],
                           check=True)
            row = {"row": name, "context": context, "seed": seed, **json.loads(result.read_text())}
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"done: {name}: test F1 {row['test_f1']}, validation F1 {row['validation_f1']}")


if __name__ == "__main__":
    main()
