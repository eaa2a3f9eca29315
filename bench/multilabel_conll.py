"""Multi-label text classification built from CoNLL-2003: nerflow against TF-IDF + one-vs-rest logistic regression.

A text is a CoNLL sentence (its words joined by spaces), its labels the entity types it mentions (LOC, MISC, ORG,
PER; about a fifth of the sentences mention none), on the official train/valid/test split. The derived JSON lines go to
`--work`/data (bench/out/, never the repository). Both systems get per-label thresholds tuned on validation by the
same rule (nerflow.textcat.evaluate.choose_thresholds) and are scored by the same code (nerflow.textcat.evaluate):
macro F1, exact-match (subset) accuracy, macro average precision.

Each row is appended to `--out` (JSON lines) as soon as it is done, and a row already there is skipped, so a run
cut short continues where it stopped when started again. A nerflow row is one `nerflow run
configs/conll_multilabel.yaml` (its stage cache and MLflow store under `--work`), read back from the run's metrics.

    python bench/multilabel_conll.py                                    # every row (nerflow: hours on 2 cores)
    python bench/multilabel_conll.py --systems tfidf                    # the baseline alone (about a minute)
    python bench/multilabel_conll.py --systems nerflow:train.pos_weight=auto --seeds 42 7
    python bench/multilabel_conll.py --limit 200 --out bench/out/multilabel-slice.jsonl train.epochs=1   # a slice
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paths import portable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "conll_multilabel.yaml"
SPLITS = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
LABELS = ["LOC", "MISC", "ORG", "PER"]


def derive(conll_dir: Path, out: Path, limit: int | None) -> dict[str, list[dict]]:
    """`<split>.jsonl` in `out`: per sentence its text and the sorted entity types of its B-/I- tags."""
    from nerflow.ner.data import read_conll

    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, name in SPLITS.items():
        rows = [{"text": " ".join(s.tokens), "labels": sorted({t[2:] for t in s.tags if t != "O"})}
                for s in read_conll(conll_dir / name)][:limit]
        tmp = out / f"{split}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(out / f"{split}.jsonl")
        splits[split] = rows
    return splits


def scored(gold: list[list[str]], probs: np.ndarray, thresholds: np.ndarray, prefix: str) -> dict:
    from nerflow.textcat import evaluate, selection

    s = evaluate.score(gold, probs, LABELS, True, thresholds)
    return {f"{prefix}f1_macro": s.macro_f1, f"{prefix}subset_accuracy": s.accuracy, f"{prefix}f1_micro": s.micro_f1,
            f"{prefix}average_precision": selection.macro_average_precision(gold, probs, LABELS)}


def tfidf(splits: dict[str, list[dict]]) -> dict:
    """Word and bigram TF-IDF (sublinear tf), one logistic regression per label; C chosen on validation macro F1
    with the thresholds tuned on validation for that C."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    from nerflow.textcat import evaluate

    texts = {s: [r["text"] for r in rows] for s, rows in splits.items()}
    gold = {s: [r["labels"] for r in rows] for s, rows in splits.items()}
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=False)
    x = {"train": vectorizer.fit_transform(texts["train"])}
    x |= {s: vectorizer.transform(texts[s]) for s in ("validation", "test")}
    y = MultiLabelBinarizer(classes=LABELS).fit_transform(gold["train"])
    best = None
    for c in (1.0, 3.0, 10.0, 30.0, 100.0):
        model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000)).fit(x["train"], y)
        probs = model.predict_proba(x["validation"])
        thresholds = evaluate.choose_thresholds(gold["validation"], probs, LABELS)
        f1 = evaluate.score(gold["validation"], probs, LABELS, True, thresholds).macro_f1
        if best is None or f1 > best[0]:
            best = (f1, c, model, thresholds)
    _, c, model, thresholds = best
    return {"C": c, "thresholds": [round(float(t), 4) for t in thresholds],
            **scored(gold["validation"], model.predict_proba(x["validation"]), thresholds, "val_"),
            **scored(gold["test"], model.predict_proba(x["test"]), thresholds, "test_"),
            "train_seconds": round(time.perf_counter() - started, 1)}


def nerflow_row(spec: str, seed: int, args) -> dict:
    """`nerflow` or `nerflow:key=value,key=value`: the documented command with those overrides."""
    extra = [o for o in spec.partition(":")[2].split(",") if o]
    name = "nerflow-conll-multilabel-" + "-".join([*(o.replace("=", "-").replace(".", "_") for o in extra),
                                                    f"seed{seed}"])
    overrides = [f"data.dir={args.work / 'data'}", f"seed={seed}", f"registry.model_name={name}",
                 f"cache_dir={args.work / 'cache'}", "promote.auto=false", *extra, *args.overrides]
    uri = f"sqlite:///{(args.work / 'mlflow.db').resolve()}"
    started = time.perf_counter()
    cmd = [str(Path(sys.executable).parent / "nerflow"), "run", str(CONFIG), *overrides]
    subprocess.run(cmd, check=True, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    wall = time.perf_counter() - started
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("nerflow-conll-multilabel")
    run = client.search_runs([exp.experiment_id], f"params.`registry.model_name` = '{name}'",
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    m = run.data.metrics   # names: docs/metrics.md
    return {"command": " ".join(portable(a) for a in ["nerflow", "run", str(CONFIG.relative_to(ROOT)), *overrides]),
            "run_id": run.info.run_id, "best_epoch": m.get("train/best_epoch"),
            "val_f1_macro": m["val/best_f1"], "val_subset_accuracy": m["val/best_accuracy"],
            "val_average_precision": m.get("val/best_average_precision"),
            "test_f1_macro": m["test/f1"], "test_subset_accuracy": m["test/accuracy"],
            "test_f1_micro": m["test/f1_micro"], "test_average_precision": m.get("test/average_precision"),
            "train_seconds": m.get("train/train_seconds"), "wall_seconds": round(wall, 1)}


def done_rows(path: Path) -> dict[str, dict]:
    """The rows already in the results file, by their key (system, seed, slice)."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["row"]: row for row in rows}


def append_row(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:   # one line per row: a kill loses at most the row in progress
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    ap.add_argument("--systems", nargs="+", default=["tfidf", "nerflow", "nerflow:train.pos_weight=auto"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42], help="nerflow rows (the baseline is deterministic)")
    ap.add_argument("--limit", type=int, default=None, help="the first N sentences of each split (a quick check)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "multilabel-conll")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "multilabel_conll.jsonl")
    ap.add_argument("overrides", nargs="*", help="key=value for every nerflow run (e.g. train.epochs=1)")
    args = ap.parse_args()
    args.work = args.work.resolve()
    splits = derive(args.data_dir, args.work / "data", args.limit)
    for split, rows in splits.items():
        print(f"{split}: {len(rows)} sentences, {sum(not r['labels'] for r in rows) / len(rows):.1%} without a label, "
              + ", ".join(f"{t} {sum(t in r['labels'] for r in rows)}" for t in LABELS), flush=True)
    done = done_rows(args.out)
    slice_ = {"limit": args.limit, "overrides": args.overrides}
    for system in args.systems:
        for seed in ([None] if system == "tfidf" else args.seeds):
            key = json.dumps({"system": system, "seed": seed, **slice_}, sort_keys=True)
            if key in done:
                print(f"done already: {system} seed {seed}", flush=True)
                continue
            print(f"--- {system}" + (f" seed {seed}" if seed is not None else ""), flush=True)
            result = tfidf(splits) if system == "tfidf" else nerflow_row(system, seed, args)
            row = {"row": key, "system": system, "seed": seed, **slice_, "date": time.strftime("%Y-%m-%d %H:%M"),
                   **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}
            append_row(args.out, row)
            print(f"{system:<36} test macro F1 {row['test_f1_macro']:.4f}  subset accuracy "
                  f"{row['test_subset_accuracy']:.4f}  (validation {row['val_f1_macro']:.4f} / "
                  f"{row['val_subset_accuracy']:.4f})", flush=True)
    print(f"rows in {args.out}")


if __name__ == "__main__":
    main()
