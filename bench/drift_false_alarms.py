"""Where the drift check's false alarms on CoNLL-2003 come from (issue 26): bench/drift_conll.py's calibrated
no-drift batches, replayed for the input descriptors alone, with each alarm traced to the documents of its batch.

The descriptors (words, characters per word, non-letter share, unknown and heavily split words) need only the
tokenizer, not the trained model, so this runs in about a minute without the champion: the same reference/hold-out
split (nerflow.drift_profile.split_documents), the same cross-fitted halves of the hold-out, the same seeds and the
same null as nerflow.drift_calibration.holdout_null (a bootstrap of the reference's documents against hold-out
batches drawn by document), so its per-descriptor alarm counts are those of drift_conll.py's rows. For each
descriptor and batch size it writes how many no-drift and noisy-news batches the descriptor flags, and the documents
most over-represented in the flagged no-drift batches (flagged batches holding the document / batches holding it).
With `--training`, the null batches are drawn from the hold-out half's and the training split's documents together,
as `nerflow drift` does since the reference holds the training split's descriptors (holdout_null's `pool`).

    python bench/drift_false_alarms.py --out bench/results/drift_false_alarms-cpu-2026-12-05.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drift_conll import SIZES, cross_fit_folds, noisy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JUDGED = 200       # judged batches per size, as drift_conll.py's --resamples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "out" / "cache")
    ap.add_argument("--training", action="store_true",
                    help="calibrate on the training split's documents too (nerflow.drift_calibration's pool)")
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from nerflow import drift_calibration, drift_profile, task_types
    from nerflow.config import load_config
    from nerflow.models import resolve_model

    cfg = load_config(ROOT / "configs" / "conll2003.yaml", [f"data.dir={args.data_dir / 'conll2003'}"])
    m = cfg.monitor
    with contextlib.redirect_stdout(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model.name_or_path, args.cache))
    corpus = task_types.entry("token-classification", "validate").load_corpus(cfg.data)
    pairs = task_types.entry("token-classification", "reference").texts_of(corpus["validation"])
    ref_rows, held_rows = drift_profile.split_documents([d for _, d in pairs], m.reference_share, 10**6, cfg.seed)
    held_texts, held_docs = [pairs[k][0] for k in held_rows], [pairs[k][1] for k in held_rows]
    reference = drift_profile.describe([pairs[k][0] for k in ref_rows], tokenizer)
    holdout = {"no-drift": drift_profile.describe(held_texts, tokenizer),
               "noisy-news": drift_profile.describe([noisy(t, random.Random(k)) for k, t in enumerate(held_texts)],
                                                    tokenizer)}
    folds, number = cross_fit_folds(held_docs, cfg.seed)
    pool = None
    if args.training:
        train_pairs = task_types.entry("token-classification", "reference").texts_of(corpus["train"])
        work = Path(tempfile.mkdtemp(prefix="drift-training-"))
        drift_profile.save_training(train_pairs, m.max_training_texts, cfg.seed, tokenizer, work)
        pool = drift_profile.load_training(work)
    ref_numbers: dict[str, int] = {}
    ref_docs = [ref_numbers.setdefault(pairs[k][1], len(ref_numbers)) for k in ref_rows]
    # as holdout_null: a descriptor with one value everywhere is left out, and k counts the embedding and the two
    # prediction checks too
    names = [n for n in drift_profile.DESCRIPTORS
             if len(np.unique(np.concatenate([reference[n], holdout["no-drift"][n]]))) > 1]
    per_check = m.alpha / (1 + len(names) + 2)
    resamples = max(m.holdout_batches, math.ceil(2 / per_check))
    lengths = Counter(held_docs)

    def ks(ref: np.ndarray, values: np.ndarray) -> float:
        return drift_calibration._ks(ref[~np.isnan(ref)], values)

    result = {"model_free": "descriptors only (the tokenizer of model.name_or_path)", "per_check_alpha": per_check,
              "calibration": "hold-out + training split" if pool is not None else "hold-out",
              "training_texts": len(pool[1]) if pool is not None else 0,
              "holdout_batches": resamples, "rows": {}}
    for size in SIZES:
        flagged = {b: Counter() for b in holdout}
        with_doc: dict[str, Counter] = {n: Counter() for n in names}
        holding: Counter = Counter()
        for calib, judged in ((0, 1), (1, 0)):
            calib_docs = [number[held_docs[r]] for r in folds[calib]]
            # the pooled values and documents exactly as holdout_null builds them (its seeds too)
            values, docs_of = drift_calibration._pooled({"descriptors": {n: holdout["no-drift"][n][folds[calib]]
                                                                         for n in names}}, calib_docs, pool)
            draws = drift_calibration.holdout_batches(docs_of, size, resamples,
                                                      size + calib + (2 if pool is not None else 0))
            refs = drift_calibration.holdout_batches(ref_docs, len(ref_rows), resamples, size + calib + 1)
            null = {n: np.array([ks(reference[n][r], values[n][rows]) for r, rows in zip(refs, draws)])
                    for n in names}
            judged_docs = [number[held_docs[r]] for r in folds[judged]]
            for rows in drift_calibration.holdout_batches(judged_docs, size, JUDGED // 2, seed=1000 + size + judged):
                picked = [folds[judged][k] for k in rows]
                docs = {held_docs[p] for p in picked}
                holding.update(docs)
                for batch, profile in holdout.items():
                    hits = [n for n in names
                            if (1 + np.sum(null[n] >= ks(reference[n], profile[n][picked]))) / (1 + resamples)
                            < per_check]
                    flagged[batch].update([*hits, "any descriptor"] if hits else [])
                    if batch == "no-drift":
                        for n in hits:
                            with_doc[n].update(docs)
        result["rows"][str(size)] = {
            "batches": JUDGED, **{b: dict(c) for b, c in flagged.items()},
            "no-drift alarms by document": {
                n: [{"document": d.rsplit("/", 1)[-1], "texts": lengths[d], "flagged": k, "batches_holding": holding[d],
                     "mean_chars_per_word": round(float(np.mean([holdout["no-drift"]["chars_per_word"][r]
                                                                 for r, h in enumerate(held_docs) if h == d])), 2)}
                    for d, k in c.most_common(3)] for n, c in with_doc.items() if c}}
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(size, json.dumps(result["rows"][str(size)]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
