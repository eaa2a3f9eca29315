"""Movie-review sentiment: a TF-IDF + logistic regression baseline against nerflow with each long-document strategy,
all on the same 80/10/10 split (configs/movie_reviews.yaml: stratified, seed 13), with a paired bootstrap interval
of each strategy's difference from the baseline on the same test reviews.

Each strategy is one `nerflow run` (its own registered model name, one shared stage cache under --work); results are
read from the runs' MLflow metrics and the evaluate stage's test predictions. One job at a time. `--out` is rewritten
as each row completes, and a row already there (same system: strategy and overrides) is skipped, so a benchmark cut
short continues where it stopped when the script is started again.

    python bench/movie_reviews.py --data-dir ../shared/data/movie_reviews --out bench/out/movie_reviews.json
    python bench/movie_reviews.py --strategies head windows:tokenize.window_training=pooled ...
    python bench/movie_reviews.py --strategies windows --out bench/results/movie_reviews_adaptation-cpu.json \
        pretrain.enabled=true pretrain.epochs=3          # overrides for every row name the row
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
from paths import portable

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "movie_reviews.yaml"


def split_of(data_dir: Path):
    from nerflow.config import load_config
    from nerflow.textcat.data import load_corpus

    cfg = load_config(CONFIG, [f"data.dir={data_dir}"])
    return cfg, load_corpus(cfg.data)


def baseline(corpus) -> dict:
    """TF-IDF (words and bigrams, sublinear tf) + logistic regression, C chosen on validation accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = {s: [d.text for d in docs] for s, docs in corpus.items()}
    gold = {s: [d.labels[0] for d in docs] for s, docs in corpus.items()}
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform(texts["train"])
    best = None
    for c in (0.3, 1.0, 3.0, 10.0, 30.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, gold["train"])
        predicted = model.predict(vectorizer.transform(texts["validation"]))
        accuracy = float(np.mean(predicted == np.array(gold["validation"])))
        if best is None or accuracy > best[0]:
            best = (accuracy, c, model)
    seconds = time.perf_counter() - started
    predicted = list(best[2].predict(vectorizer.transform(texts["test"])))
    return {"system": "tfidf+logreg", "C": best[1], "val_accuracy": best[0], "train_seconds": seconds,
            "test_pred": predicted}


def system_name(spec: str, overrides: list[str]) -> str:
    return " ".join(["nerflow", spec, *overrides])


def run_strategy(spec: str, args) -> dict:
    """`head`, `head_tail`, `windows`, or one of them with extra overrides after a colon."""
    strategy, _, extra = spec.partition(":")
    name = "nerflow-movie-reviews-" + "-".join([spec, *args.overrides]).replace(":", "-").replace("=", "-").replace(
        ",", "-").replace(".", "_").replace("/", "_").replace("[", "").replace("]", "")
    overrides = [f"data.dir={args.data_dir}", f"tokenize.long_documents={strategy}", f"registry.model_name={name}",
                 f"cache_dir={args.work / 'cache'}", "experiment=bench-movie-reviews", "promote.auto=false",
                 *[o for o in extra.split(",") if o], *args.overrides]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{(args.work / 'mlflow.db').resolve()}"}
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "nerflow"), "run", str(CONFIG), *overrides], check=True, env=env)
    wall = time.perf_counter() - started
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("bench-movie-reviews")
    run = client.search_runs([exp.experiment_id], f"params.`registry.model_name` = '{name}'",
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    m, tags = run.data.metrics, run.data.tags
    predictions = args.work / "cache" / "evaluate" / tags["stage.evaluate.key"] / "test_predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    return {"system": system_name(spec, args.overrides), "strategy": strategy, "date": time.strftime("%Y-%m-%d %H:%M"),
            "overrides": [portable(o) for o in overrides],
            "run_id": run.info.run_id,
            "val_f1_macro": m["val/best_f1"], "train_seconds": m.get("train/train_seconds"),
            "train_stage_seconds": m["stage/train_seconds"], "wall_seconds_this_call": wall,
            "samples_per_s": m.get("train/samples_per_s"), "truncated_share": m.get("tokenize/truncated_share"),
            "windows_per_text": m.get("tokenize/windows_per_text_test"), "test_ece": m.get("test/ece"),
            "test_pred": [r["predicted"][0] for r in rows], "test_sources": [r["source"] for r in rows]}


def scores(gold: list[str], pred: list[str]) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    return float(np.mean(np.array(gold) == np.array(pred))), float(f1_score(gold, pred, average="macro"))


def paired_bootstrap(gold: list[str], a: list[str], b: list[str], n: int = 10_000, seed: int = 0) -> dict:
    """95% intervals of (a - b) accuracy and macro F1, resampling the same test reviews for both systems."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    gold_, a_, b_ = map(np.array, (gold, a, b))
    acc, f1 = [], []
    for _ in range(n):
        idx = rng.integers(0, len(gold_), len(gold_))
        acc.append(np.mean(a_[idx] == gold_[idx]) - np.mean(b_[idx] == gold_[idx]))
        f1.append(f1_score(gold_[idx], a_[idx], average="macro") - f1_score(gold_[idx], b_[idx], average="macro"))
    q = lambda xs: [float(np.percentile(xs, 2.5)), float(np.percentile(xs, 97.5))]  # noqa: E731
    return {"accuracy_diff_95": q(acc), "f1_macro_diff_95": q(f1), "resamples": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "movie_reviews")
    ap.add_argument("--strategies", nargs="+", default=["head", "head_tail", "windows"])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "movie-reviews")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "movie_reviews.json")
    ap.add_argument("--bootstrap", type=int, default=10_000)
    ap.add_argument("overrides", nargs="*", help="key=value for every nerflow run (e.g. train.epochs=2)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cfg, corpus = split_of(args.data_dir)
    gold = [d.labels[0] for d in corpus["test"]]
    sources = [d.source for d in corpus["test"]]
    base = baseline(corpus)   # deterministic and seconds long: recomputed each time, for the paired intervals
    base["test_accuracy"], base["test_f1_macro"] = scores(gold, base["test_pred"])
    previous = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = [r for r in previous if r["system"] != base["system"]]

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        kept = [{k: v for k, v in r.items() if k != "test_pred"} for r in (base, *rows)]
        args.out.write_text(json.dumps({"config": str(CONFIG.relative_to(ROOT)), "test_size": len(gold),
                                        "rows": kept}, indent=1))

    write()
    for spec in args.strategies:
        if system_name(spec, args.overrides) in {r["system"] for r in rows}:
            print(f"skipped (already in {args.out}): {system_name(spec, args.overrides)}", flush=True)
            continue
        row = run_strategy(spec, args)
        order = {s: i for i, s in enumerate(row.pop("test_sources"))}
        row["test_pred"] = [row["test_pred"][order[s]] for s in sources]   # the baseline's order
        row["test_accuracy"], row["test_f1_macro"] = scores(gold, row["test_pred"])
        row["vs_baseline"] = paired_bootstrap(gold, row.pop("test_pred"), base["test_pred"], args.bootstrap)
        rows.append(row)
        write()
    print(f"test reviews: {len(gold)} ({', '.join(f'{label} {gold.count(label)}' for label in sorted(set(gold)))})")
    print(f"{'system':<40} {'test acc':>8} {'macro F1':>8} {'train s':>8}  vs baseline (95% paired bootstrap)")
    for row in (base, *rows):
        ci = row.get("vs_baseline")
        diff = (f"acc {100 * (row['test_accuracy'] - base['test_accuracy']):+.1f} pts "
                f"[{100 * ci['accuracy_diff_95'][0]:+.1f}, {100 * ci['accuracy_diff_95'][1]:+.1f}]") if ci else ""
        print(f"{row['system']:<40} {row['test_accuracy']:>8.4f} {row['test_f1_macro']:>8.4f} "
              f"{row.get('train_seconds') or 0:>8.0f}  {diff}")
    print(f"written {args.out}")

if __name__ == "__main__":
    main()
