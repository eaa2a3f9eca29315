"""nerflow's side of the CoNLL-2003 comparison: the documented command, timed end to end, cold cache.

    python bench/conll2003_nerflow.py --data-dir ../shared/data/conll2003 --out bench/out/nerflow.json

Runs `nerflow run configs/conll2003.yaml data.dir=... model.name_or_path=all-MiniLM-L6-v2` (3 epochs, the config's
defaults) in a subprocess with a fresh stage cache and MLflow store under bench/out/, then reads the run's metrics.
Compare with bench/hf_trainer_recipe.py (same data, same model, same scorer: seqeval strict IOB2).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/conll2003"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/nerflow.json"))
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = ap.parse_args()
    work = args.out.parent / "nerflow-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    cmd = [str(Path(sys.executable).parent / "nerflow"), "run", "configs/conll2003.yaml",
           f"data.dir={args.data_dir}", "model.name_or_path=all-MiniLM-L6-v2", f"cache_dir={work / 'cache'}",
           *args.overrides]
    started = time.time()
    subprocess.run(cmd, check=True, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    wall = time.time() - started

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("nerflow-conll2003")
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    m = run.data.metrics
    types = [k.removeprefix("test/support_") for k in m if k.startswith("test/support_")]   # docs/metrics.md
    # the result file keeps its own (older) field names: docs/benchmarks.md compares results across sessions
    result = {"system": "nerflow", "command": " ".join(cmd[1:]), "test_f1": round(m["test/f1"], 4),
              "validation_f1": round(m["val/best_f1"], 4), "best_epoch": m.get("train/best_epoch"),
              "train_seconds": round(m["stage/train_seconds"], 1), "wall_seconds": round(wall, 1),
              "train_samples_per_s": round(m["train/samples_per_s"], 1),
              "per_type_test_f1": {t: round(m[f"test/f1_{t}"], 4) for t in sorted(types)}}
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
