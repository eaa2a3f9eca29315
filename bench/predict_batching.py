"""`nerflow predict` batch throughput with prediction's forward passes sized by a token budget (nerflow.batching
.predict_batch_tokens: 4,096 padded positions on a CPU, at most 256 sequences) against the sizes used before
(NER: 64 windows a pass, no token budget; texts: 16,384 positions), per runtime, on the served folders
`bench/serving_runtimes.py` wrote. One process, the two settings alternated per runtime, two rounds (the second in
reverse order); each measurement is written to `--out` as it completes and skipped when already there.

    python bench/predict_batching.py --served bench/out/serving_runtimes/serving_runtimes-movies-cpu-2026-12-05 \
        --run-dir ../w-bench/bench/out/movie-reviews --out bench/results/predict_batching-movies-cpu-2026-12-06.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

from serving_runtimes import batch_predict

OLD = {"token-classification": (10**9, 64), "text-classification": (16384, 256)}   # (positions, sequences)


def setting(name: str, task: str) -> None:
    import nerflow.ner.predict
    import nerflow.textcat.predict
    from nerflow import batching

    tokens, sequences = OLD[task] if name == "before" else (4096, 256)
    batching.CPU_PREDICT_TOKENS = tokens
    nerflow.ner.predict.PREDICT_MAX_SEQUENCES = nerflow.textcat.predict.PREDICT_MAX_SEQUENCES = sequences


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--served", type=Path, required=True, help="the folder holding served-<runtime>/ variants")
    ap.add_argument("--run-dir", type=Path, required=True, help="the benchmark run whose test split is predicted")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runtimes", nargs="+", default=["torch", "torch-bf16", "onnx-int8"])
    args = ap.parse_args(argv)
    from nerflow import task_types

    generations = (args.run_dir / "cache" / "validate" / ".generations").iterdir()
    validated = sorted(generations, key=lambda p: p.stat().st_mtime)[0]
    lines = [json.loads(line) for line in (validated / "test.jsonl").read_text().splitlines()]
    docs = [{"text": " ".join(d["tokens"]) if "tokens" in d else d["text"]} for d in lines]
    units = sum(len(d["tokens"]) for d in lines) if "tokens" in lines[0] else len(lines)
    task = "token-classification" if "tokens" in lines[0] else "text-classification"
    done = json.loads(args.out.read_text()) if args.out.is_file() else {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "served": str(args.served), "task": task, "units": units, "rows": {}}
    for round_, order in enumerate((("before", "budget"), ("budget", "before"))):
        for runtime in args.runtimes:
            for name in order:
                key = f"{runtime} {name} round {round_ + 1}"
                if key in done["rows"]:
                    continue
                setting(name, task)
                row = batch_predict(args.served / f"served-{runtime}", docs, task_types.get(task))
                done["rows"][key] = {**row, "per_s": round(units / row["predict_s"], 1)}
                args.out.write_text(json.dumps(done, indent=1) + "\n")
                print(key, done["rows"][key], flush=True)


if __name__ == "__main__":
    main()
