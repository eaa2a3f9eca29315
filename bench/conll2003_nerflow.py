"""nerflow's side of the CoNLL-2003 comparison: the documented command, timed end to end, cold cache.

    python bench/conll2003_nerflow.py --data-dir ../shared/data/conll2003 --out bench/out/nerflow.json

Runs `nerflow run configs/conll2003.yaml data.dir=... model.name_or_path=all-MiniLM-L6-v2` (3 epochs, the config's
defaults) in a subprocess with a fresh stage cache and MLflow store under bench/out/, then reads the run's metrics.
Compare with bench/hf_trainer_recipe.py (same data, same model, same scorer: seqeval strict IOB2).

It also reports where the run's wall time went: the pipeline's own machinery (start-up, Prefect, MLflow, Great
Expectations, tokenization, caching, registration: everything but the train, evaluate and promote computations) as
a share of the whole, tokenization sentences/s on the train split, evaluation words/s (validation + test, Viterbi
decoding included), and batch prediction words/s (`nerflow predict` on the test sentences as plain text).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paths import portable  # noqa: E402


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
    computations = sum(m[f"stage/{s}_seconds"] for s in ("train", "evaluate", "promote"))
    words = {split: m[f"data/tokens_{split}"] for split in ("validation", "test")}
    model_uri = f"models:/{run.data.tags['registered_model']}/{run.data.tags['registered_version']}"
    prediction = predict_speed(model_uri, args.data_dir, work, uri)
    # the result file keeps its own (older) field names: docs/benchmarks.md compares results across sessions
    result = {"system": "nerflow", "command": " ".join(map(portable, cmd[1:])), "test_f1": round(m["test/f1"], 4),
              "validation_f1": round(m["val/best_f1"], 4), "best_epoch": m.get("train/best_epoch"),
              "train_seconds": round(m["stage/train_seconds"], 1), "wall_seconds": round(wall, 1),
              "train_samples_per_s": round(m["train/samples_per_s"], 1),
              "trainable_parameters": m.get("train/trainable_parameters"),
              "adapter_bytes": m.get("train/adapter_bytes"),   # train.adapter=lora: the adapter with its head
              "per_type_test_f1": {t: round(m[f"test/f1_{t}"], 4) for t in sorted(types)},
              "per_type_test_f1_exact": {t: m[f"test/f1_{t}"] for t in sorted(types)}, "test_f1_exact": m["test/f1"],
              "stage_seconds": {k.removeprefix("stage/").removesuffix("_seconds"): round(v, 1)
                                for k, v in m.items() if k.startswith("stage/")},
              "machinery_seconds": round(wall - computations, 1),
              "machinery_share": round((wall - computations) / wall, 4),
              "tokenize_sentences_per_s": round(m["tokenize/sentences_per_s"], 0),
              "evaluate_words_per_s": round(sum(words.values()) / m["stage/evaluate_seconds"], 0),
              **prediction}
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def predict_speed(model_uri: str, data_dir: Path, work: Path, uri: str) -> dict:
    """`nerflow predict` on CoNLL-2003 test, one sentence per line (pretokenized text joined by spaces)."""
    from nerflow.ner.data import read_conll

    sentences = read_conll(data_dir / "test.txt")
    text = work / "test-sentences.txt"
    text.write_text("".join(" ".join(s.tokens) + "\n" for s in sentences))
    cmd = [str(Path(sys.executable).parent / "nerflow"), "predict", model_uri, "--input", str(text),
           "--output", str(work / "test-spans.jsonl"), "--batch-size", "256", "--json"]
    started = time.time()
    done = subprocess.run(cmd, check=True, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True,
                          text=True)
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    words = sum(len(s.tokens) for s in sentences)
    return {"predict_words_per_s": round(words / stats["seconds"], 0),
            "predict_wall_seconds": round(time.time() - started, 1)}


if __name__ == "__main__":
    main()
