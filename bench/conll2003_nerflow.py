"""nerflow's side of the CoNLL-2003 comparison: the documented command, timed end to end, cold cache.

    python bench/conll2003_nerflow.py --data-dir ../shared/data/conll2003 --out bench/out/nerflow.json

Runs `nerflow run configs/conll2003.yaml data.dir=... model.name_or_path=all-MiniLM-L6-v2` (3 epochs, the config's
defaults) in a subprocess with a fresh stage cache and MLflow store under bench/out/, then reads the run's metrics.
Compare with bench/hf_trainer_recipe.py (same data, same model, same scorer: seqeval strict IOB2).

It also reports where the run's wall time went: the pipeline's own machinery (start-up, Prefect, MLflow, Great
Expectations, tokenization, caching, registration: everything but the train, evaluate and promote computations) as
a share of the whole, tokenization sentences/s on the train split, evaluation words/s (validation + test, Viterbi
decoding included), and batch prediction words/s (`nerflow predict` on the test sentences as plain text).

`--resume` (hours-long rows, e.g. with the distill stage, that a session's end may cut): if the work folder holds
an unfinished run (killed, failed), it is continued with `nerflow rerun RUN_ID` (same MLflow run, its finished
stages reused, training resumed from its last checkpoint) instead of starting cold. Such a result has `attempts`
> 1; its stage seconds add up the attempts that logged them (an attempt killed inside a stage logs nothing for it),
and its wall time and machinery share are null: no one leg measured the whole.
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
    ap.add_argument("--resume", action="store_true", help="continue the work folder's unfinished run, if any")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = ap.parse_args()
    work = args.out.parent / "nerflow-run"
    uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    cmd = [str(Path(sys.executable).parent / "nerflow"), "run", "configs/conll2003.yaml",
           f"data.dir={args.data_dir}", "model.name_or_path=all-MiniLM-L6-v2", f"cache_dir={work / 'cache'}",
           *args.overrides]
    unfinished = latest_run(uri) if args.resume and (work / "mlflow.db").exists() else None
    if unfinished is not None and unfinished.info.status != "FINISHED":
        print(f"continuing run {unfinished.info.run_id} ({unfinished.info.status})", flush=True)
        leg = [cmd[0], "rerun", unfinished.info.run_id]
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        leg = cmd
    started = time.time()
    subprocess.run(leg, check=True, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    wall = time.time() - started

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run = latest_run(uri)
    m = run.data.metrics
    attempts = int(run.data.tags.get("nerflow.attempts", "1"))
    stage_seconds = {k.removeprefix("stage/").removesuffix("_seconds"):
                     round(sum(p.value for p in client.get_metric_history(run.info.run_id, k)), 1)
                     for k in m if k.startswith("stage/")}
    if attempts > 1:
        wall = None
    types = [k.removeprefix("test/support_") for k in m if k.startswith("test/support_")]   # docs/metrics.md
    computations = sum(stage_seconds[s] for s in ("train", "evaluate", "promote"))
    words = {split: m[f"data/tokens_{split}"] for split in ("validation", "test")}
    model_uri = f"models:/{run.data.tags['registered_model']}/{run.data.tags['registered_version']}"
    prediction = predict_speed(model_uri, args.data_dir, work, uri)
    # the result file keeps its own (older) field names: docs/benchmarks.md compares results across sessions
    result = {"system": "nerflow", "command": " ".join(map(portable, cmd[1:])), "test_f1": round(m["test/f1"], 4),
              "validation_f1": round(m["val/best_f1"], 4), "best_epoch": m.get("train/best_epoch"),
              "train_seconds": stage_seconds["train"], "wall_seconds": wall and round(wall, 1),
              "attempts": attempts,
              "train_samples_per_s": round(m["train/samples_per_s"], 1),
              "trainable_parameters": m.get("train/trainable_parameters"),
              "adapter_bytes": m.get("train/adapter_bytes"),   # train.adapter=lora: the adapter with its head
              "per_type_test_f1": {t: round(m[f"test/f1_{t}"], 4) for t in sorted(types)},
              "per_type_test_f1_exact": {t: m[f"test/f1_{t}"] for t in sorted(types)}, "test_f1_exact": m["test/f1"],
              "stage_seconds": stage_seconds,
              "machinery_seconds": wall and round(wall - computations, 1),
              "machinery_share": wall and round((wall - computations) / wall, 4),
              "tokenize_sentences_per_s": round(m["tokenize/sentences_per_s"], 0),
              "evaluate_words_per_s": round(sum(words.values()) / stage_seconds["evaluate"], 0),
              **prediction}
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def latest_run(uri: str):
    """The newest run of the work folder's MLflow store (the one this script started or continued)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("nerflow-conll2003")
    found = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1) \
        if exp is not None else []
    return found[0] if found else None


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
