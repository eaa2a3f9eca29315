"""How often `nerflow drift` cries wolf, and how often it catches real shifts (issue 26), with the offline MiniLM
CoNLL-2003 champion. Its reference is half of the validation documents and its hold-out the other half
(nerflow.drift_profile.reference_from_config, the product's own path); three shifts are built from ../shared/data:
English prose (unlabeled_en, cut into sentences), the held-out news with 5% of its letters replaced by digits and
symbols, and (since 2026-12-05, late) sentences of the movie reviews: another domain, film criticism. Every text is
profiled once (embeddings, descriptors, predictions); each batch is a resample of those rows.

The checks are calibrated on hold-out batches drawn by document (nerflow.drift_calibration), and the no-drift
batches come from the hold-out too, so the hold-out is cut in two by document: one half calibrates, the other gives
the no-drift and noisy batches, and then the other way round (cross-fitting: no batch is judged against a null built
from its own documents). Each size is decided twice on the same batches: with the hold-out alone calibrating, and
with the training split's documents joining the descriptors' null (nerflow.drift_calibration's `pool`, what `nerflow
drift` does since the reference holds `training`). Also measured: the permutation tests of nerflow.drift on the same
no-drift batches (what a test that assumes exchangeable texts does), MMD against a domain classifier's AUC as the
embedding statistic at small batches, and the time to profile and check 1,000 texts.

    python bench/drift_conll.py \
        --model bench/out/serving_runtimes/serving_runtimes-conll-cpu-2026-12-04/served-onnx-int8 \
        --out bench/results/drift_conll-cpu-2026-12-05.json

Rows are written to `--out` as each completes and skipped when already there.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (50, 200, 1000)


def prose_sentences(path: Path, limit: int, seed: int) -> list[str]:
    """Sentences of the unlabelled prose (titles in [brackets] skipped), a seeded sample."""
    text = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("[")]
    sentences = [s for line in text for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", line) if len(s.split()) >= 3]
    return random.Random(seed).sample(sentences, min(limit, len(sentences)))


def review_sentences(folder: Path, limit: int, seed: int) -> list[str]:
    """Sentences of the Pang & Lee movie reviews (one per line, lower-cased and tokenized as distributed; an uncased
    model reads them as it reads cased text), a seeded sample."""
    lines = [line.strip() for path in sorted(folder.glob("*/*.txt"))
             for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return random.Random(seed).sample([s for s in lines if len(s.split()) >= 3], limit)


def noisy(text: str, rng: random.Random, share: float = 0.05) -> str:
    return "".join(rng.choice("0123456789#@%&") if c.isalpha() and rng.random() < share else c for c in text)


def cross_fit_folds(held_docs: list[str], seed: int) -> tuple[list[list[int]], dict[str, int]]:
    """The hold-out's rows cut in two by document (one half calibrates while the other is judged), and each
    document's number."""
    doc_ids = sorted(set(held_docs))
    fold_of = {doc: int(k) for doc, k in zip(doc_ids, np.random.default_rng(seed).permutation(len(doc_ids)) % 2)}
    folds = [[r for r, d in enumerate(held_docs) if fold_of[d] == f] for f in (0, 1)]
    return folds, {d: k for k, d in enumerate(doc_ids)}


def tally(count: dict, decision) -> None:
    count["n"] += 1
    count["flagged"] += int(decision.drift)
    for c in decision.checks:
        count["per_check"][c.name] = count["per_check"].get(c.name, 0) + int(c.drift)


def mmd(reference: np.ndarray, batch: np.ndarray, bandwidth: float, _constant: dict = {}) -> float:  # noqa: B006
    """MMD^2 as nerflow.drift_calibration computes it (the reference's own term computed once)."""
    from nerflow.drift_calibration import _rbf

    if id(reference) not in _constant:
        _constant[id(reference)] = _rbf(reference, reference, bandwidth).mean()
    return float(_rbf(batch, batch, bandwidth).mean() - 2 * _rbf(batch, reference, bandwidth).mean()
                 + _constant[id(reference)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a served model folder nerflow trained on CoNLL-2003")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--resamples", type=int, default=200, help="judged batches of each kind and size")
    ap.add_argument("--permutation-resamples", type=int, default=100,
                    help="no-drift batches also judged by the permutation tests")
    ap.add_argument("--classifier-resamples", type=int, default=40,
                    help="hold-out batches of the classifier-vs-MMD comparison (half as many judged per kind)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "drift_conll")
    ap.add_argument("--no-embedding-statistic", action="store_true",
                    help="skip the MMD-vs-classifier rows (measured once, 2026-12-05; they do not use the pool)")
    args = ap.parse_args(argv)

    from nerflow import drift, drift_calibration, drift_profile, task_types, two_sample
    from nerflow.config import load_config
    from nerflow.flows.commands.predict import load_folder

    cfg = load_config(ROOT / "configs" / "conll2003.yaml", [f"data.dir={args.data_dir / 'conll2003'}"])
    m = cfg.monitor
    done = json.loads(args.out.read_text()) if args.out.is_file() else {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": os.path.relpath(args.model, ROOT), "monitor": m.model_dump(), "rows": {}}

    def save() -> None:
        args.out.write_text(json.dumps(done, indent=1) + "\n")

    predict, kind = load_folder(args.model, str(args.model))
    work = args.work
    if not (work / "holdout.npz").is_file():
        started = time.perf_counter()
        drift_profile.reference_from_config(cfg.model_copy(update={"monitor": m.model_copy(
            update={"max_reference": 10**6})}), args.model, predict, kind, work)
        done["reference_seconds"] = round(time.perf_counter() - started, 1)
    reference, about = drift_profile.load(work, "reference")
    holdout, _ = drift_profile.load(work, "holdout")
    if drift_profile.load_training(work) is None:    # a work folder profiled before the reference held it
        from transformers import AutoTokenizer

        train_pairs = task_types.entry("token-classification", "reference").texts_of(
            task_types.entry("token-classification", "validate").load_corpus(cfg.data)["train"])
        drift_profile.save_training(train_pairs, m.max_training_texts, cfg.seed,
                                    AutoTokenizer.from_pretrained(args.model), work)
    pool = drift_profile.load_training(work)
    done["training_texts"], done["training_documents"] = len(pool[1]), len(set(pool[1]))
    corpus = task_types.entry("token-classification", "validate").load_corpus(cfg.data)
    pairs = task_types.entry("token-classification", "reference").texts_of(corpus["validation"])
    ref_rows, held_rows = drift_profile.split_documents([d for _, d in pairs], m.reference_share, 10**6, cfg.seed)
    held_texts = [pairs[k][0] for k in held_rows]
    held_docs = [pairs[k][1] for k in held_rows]
    assert len(held_texts) == len(holdout["labels"])
    done |= {"reference_texts": len(ref_rows), "holdout_texts": len(held_rows), "documents": about["documents"]}
    save()

    shifts = {}
    for name, texts in (("prose", lambda: prose_sentences(args.data_dir / "unlabeled_en" / "combined_pd_ccby.txt",
                                                          3000, 1)),
                        ("noisy-news", lambda: [noisy(t, random.Random(k)) for k, t in enumerate(held_texts)]),
                        ("movie-reviews", lambda: review_sentences(args.data_dir / "movie_reviews", 3000, 1))):
        if not (work / f"{name}.npz").is_file():
            batch = texts()
            started = time.perf_counter()
            profile = drift_profile.profile_texts(batch, args.model, predict, kind, m.batch_size)
            seconds = time.perf_counter() - started
            drift_profile.save(profile, work, name, {"seconds": seconds})
            if name == "prose":
                done["profile_seconds_per_1000"] = round(seconds / len(batch) * 1000, 1)
                save()
        shifts[name], _ = drift_profile.load(work, name)

    folds, number = cross_fit_folds(held_docs, cfg.seed)
    ref_numbers: dict[str, int] = {}
    ref_docs = [ref_numbers.setdefault(pairs[k][1], len(ref_numbers)) for k in ref_rows]

    def part(profile: dict, rows: list[int]) -> tuple[dict, list[int]]:
        return drift_profile.subset(profile, rows), [number[held_docs[r]] for r in rows]

    for size, pooled in [(size, pooled) for size in SIZES for pooled in (False, True)]:
        key = f"calibrated{', training descriptors' if pooled else ''} {size}"
        if key in done["rows"]:
            continue
        counts = {b: {"flagged": 0, "n": 0, "per_check": {}} for b in ("no-drift", "prose", "noisy-news",
                                                                        "movie-reviews", "no-drift, permutation tests")}
        seconds = {"null": 0.0, "decide": 0.0}
        per_fold = args.resamples // 2
        for calib, judged in ((0, 1), (1, 0)):
            calib_profile, calib_docs = part(holdout, folds[calib])
            started = time.perf_counter()
            null = drift_calibration.holdout_null(reference, calib_profile, calib_docs, size, m.alpha,
                                                  m.holdout_batches, seed=size + calib, bandwidth=about["bandwidth"],
                                                  reference_docs=ref_docs, pool=pool if pooled else None)
            seconds["null"] += time.perf_counter() - started
            judged_docs = [number[held_docs[r]] for r in folds[judged]]
            draws = drift_calibration.holdout_batches(judged_docs, size, per_fold, seed=1000 + size + judged)
            rng = np.random.default_rng(size + judged)
            reviews_rng = np.random.default_rng(10_000 + size + judged)   # its own: the other batches stay as they were
            for r, rows in enumerate(draws):
                picked = [folds[judged][k] for k in rows]
                prose_rows = rng.choice(len(shifts["prose"]["labels"]), size=size, replace=False)
                review_rows = reviews_rng.choice(len(shifts["movie-reviews"]["labels"]), size=size, replace=False)
                for name, batch in (("no-drift", drift_profile.subset(holdout, picked)),
                                    ("prose", drift_profile.subset(shifts["prose"], prose_rows)),
                                    ("noisy-news", drift_profile.subset(shifts["noisy-news"], picked)),
                                    ("movie-reviews", drift_profile.subset(shifts["movie-reviews"], review_rows))):
                    started = time.perf_counter()
                    decision = drift_calibration.decide(null, batch)
                    seconds["decide"] += time.perf_counter() - started
                    tally(counts[name], decision)
                    if name == "no-drift" and r < args.permutation_resamples // 2 and not pooled:
                        tally(counts["no-drift, permutation tests"],
                              drift.assess(reference, batch, alpha=m.alpha, permutations=m.permutations, seed=r,
                                           bandwidth=about["bandwidth"]))
        row = {"texts": size, "holdout_batches": null.resamples, "null_seconds": round(seconds["null"] / 2, 2),
               "decide_seconds": round(seconds["decide"] / sum(c["n"] for k, c in counts.items()
                                                                if "permutation" not in k), 3)}
        for name, c in counts.items():
            if not c["n"]:
                continue
            lo, hi = two_sample.clopper_pearson(c["flagged"], c["n"])
            row[name] = {"flagged": c["flagged"], "batches": c["n"], "rate": round(c["flagged"] / c["n"], 4),
                         "ci95": [round(lo, 4), round(hi, 4)], "per_check": c["per_check"]}
        done["rows"][key] = row
        save()
        print(key, json.dumps(row), file=sys.stderr, flush=True)

    # the embedding statistic alone, calibrated the same way: MMD^2 against a domain classifier's cross-validated AUC
    for size in () if args.no_embedding_statistic else (50, 200):
        key = f"embedding statistic {size}"
        if key in done["rows"]:
            continue
        n_null, n_judged = args.classifier_resamples, args.classifier_resamples // 2
        hits = {stat: {b: 0 for b in ("no-drift", "prose", "noisy-news")} for stat in ("mmd", "classifier")}
        seconds = {"mmd": 0.0, "classifier": 0.0}
        for calib, judged in ((0, 1), (1, 0)):
            calib_docs = [number[held_docs[r]] for r in folds[calib]]
            judged_docs = [number[held_docs[r]] for r in folds[judged]]
            null_rows = drift_calibration.holdout_batches(calib_docs, size, n_null, seed=size + calib)
            # the classifier sees a seeded sample of 4x the batch from the reference (a fit per statistic: the whole
            # reference made one AUC take seconds); the same sample for the null and the judged batches
            sample = reference["embeddings"][np.random.default_rng(size).choice(len(reference["labels"]), 4 * size,
                                                                                 replace=False)]
            stats_of = {"mmd": lambda e: mmd(reference["embeddings"], e, about["bandwidth"]),
                        "classifier": lambda e, sample=sample: two_sample.classifier_auc(sample, e, seed=0)}
            nulls = {s: np.array([stats_of[s](holdout["embeddings"][[folds[calib][k] for k in rows]])
                                  for rows in null_rows]) for s in stats_of}
            rng = np.random.default_rng(size + judged)
            for rows in drift_calibration.holdout_batches(judged_docs, size, n_judged, seed=2000 + size + judged):
                picked = [folds[judged][k] for k in rows]
                prose_rows = rng.choice(len(shifts["prose"]["labels"]), size=size, replace=False)
                for name, emb in (("no-drift", holdout["embeddings"][picked]),
                                  ("prose", shifts["prose"]["embeddings"][prose_rows]),
                                  ("noisy-news", shifts["noisy-news"]["embeddings"][picked])):
                    for stat in stats_of:
                        started = time.perf_counter()
                        value = stats_of[stat](emb)
                        seconds[stat] += time.perf_counter() - started
                        p = (1 + np.sum(nulls[stat] >= value)) / (1 + len(nulls[stat]))
                        hits[stat][name] += p < m.alpha
        judged_total = 2 * n_judged
        done["rows"][key] = {"texts": size, "null_batches": n_null, "judged_batches": judged_total,
                             "alpha": m.alpha, **{f"{stat}_rate": {b: round(v / judged_total, 4)
                                                                   for b, v in hits[stat].items()}
                                                  for stat in hits},
                             **{f"{stat}_seconds": round(seconds[stat] / (3 * judged_total), 3) for stat in seconds}}
        save()
        print(key, json.dumps(done["rows"][key]), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
