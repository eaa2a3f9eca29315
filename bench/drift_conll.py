"""How often `nerflow drift` cries wolf, and how often it catches real shifts (issue 26), with the offline MiniLM
CoNLL-2003 champion: its reference is half of the validation documents (nerflow.drift_profile.reference_from_config,
the product's own path), no-drift batches are drawn from the other half by document, and two shifts are built from
../shared/data: English prose (unlabeled_en, cut into sentences) and the hold-out news with 5% of its letters
replaced by digits and symbols. Every text is profiled once (embeddings, descriptors, predictions); each batch is a
resample of those rows, decided by nerflow.drift.assess with the shipped `monitor.*` defaults.

    python bench/drift_conll.py --model bench/out/serving_runtimes/sentence-seed42/served-onnx-int8 \
        --out bench/results/drift_conll-cpu.json

Rows (one per batch size and batch kind: no-drift, prose, noisy news) are written to `--out` as each completes and
skipped when already there. Also: embedding MMD against a domain classifier's AUC at small batches (embeddings only),
and the time to profile and check 1,000 texts.
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


def noisy(text: str, rng: random.Random, share: float = 0.05) -> str:
    return "".join(rng.choice("0123456789#@%&") if c.isalpha() and rng.random() < share else c for c in text)


def by_document(docs: list[str], n: int, rng: np.random.Generator) -> list[int]:
    """Rows of whole documents, in a random order, until `n` texts (the last document cut)."""
    rows_of: dict[str, list[int]] = {}
    for row, doc in enumerate(docs):
        rows_of.setdefault(doc, []).append(row)
    order = list(rows_of)
    rows: list[int] = []
    for k in rng.permutation(len(order)):
        rows += rows_of[order[k]]
        if len(rows) >= n:
            break
    return rows[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a served model folder nerflow trained on CoNLL-2003")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--classifier-resamples", type=int, default=40)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "drift_conll")
    args = ap.parse_args(argv)

    from nerflow import drift, drift_profile, task_types
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
    corpus = task_types.entry("token-classification", "validate").load_corpus(cfg.data)
    pairs = kind.texts_of(corpus["validation"])
    ref_rows, held_rows = drift_profile.split_documents([d for _, d in pairs], m.reference_share, 10**6, cfg.seed)
    held_texts = [pairs[k][0] for k in held_rows]
    held_docs = [pairs[k][1] for k in held_rows]
    assert len(held_texts) == len(holdout["labels"])
    done |= {"reference_texts": len(ref_rows), "holdout_texts": len(held_rows), "documents": about["documents"]}
    save()

    shifts = {}
    for name, texts in (("prose", lambda: prose_sentences(args.data_dir / "unlabeled_en" / "combined_pd_ccby.txt",
                                                          3000, 1)),
                        ("noisy-news", lambda: [noisy(t, random.Random(k)) for k, t in enumerate(held_texts)])):
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

    def decide(batch: dict, seed: int) -> drift.Decision:
        return drift.assess(reference, batch, alpha=m.alpha, permutations=m.permutations, seed=seed,
                            bandwidth=about["bandwidth"])

    for size in SIZES:
        for kind_name in ("no-drift", "prose", "noisy-news"):
            key = f"{kind_name} {size}"
            if key in done["rows"]:
                continue
            rng = np.random.default_rng(size)
            flagged, per_check, seconds = 0, {}, 0.0
            for r in range(args.resamples):
                if kind_name == "prose":
                    pool = shifts["prose"]
                    rows = rng.choice(len(pool["labels"]), size=min(size, len(pool["labels"])), replace=False)
                else:
                    pool = holdout if kind_name == "no-drift" else shifts["noisy-news"]
                    rows = by_document(held_docs, size, rng)
                started = time.perf_counter()
                decision = decide(drift_profile.subset(pool, rows), seed=r)
                seconds += time.perf_counter() - started
                flagged += decision.drift
                for c in decision.checks:
                    per_check[c.name] = per_check.get(c.name, 0) + int(c.drift)
            lo, hi = drift.clopper_pearson(flagged, args.resamples)
            done["rows"][key] = {"batch": kind_name, "texts": size, "resamples": args.resamples, "flagged": flagged,
                                 "rate": flagged / args.resamples, "ci95": [round(lo, 4), round(hi, 4)],
                                 "per_check": per_check, "check_seconds": round(seconds / args.resamples, 3)}
            save()
            print(key, done["rows"][key], file=sys.stderr, flush=True)

    # embeddings alone: MMD (permutation p) against a domain classifier (cross-validated AUC, permutation p). The
    # classifier refits per permutation, so it sees a seeded sample of 4x the batch from the reference, and 49
    # permutations (smallest p 0.02): both tests at the family-wise alpha, as if each were the only check
    for size in (50, 200):
        for kind_name in ("no-drift", "prose", "noisy-news"):
            key = f"embedding-tests {kind_name} {size}"
            if key in done["rows"]:
                continue
            rng = np.random.default_rng(1000 + size)
            hits = {"mmd": 0, "classifier": 0}
            seconds = {"mmd": 0.0, "classifier": 0.0}
            n = args.classifier_resamples
            for r in range(n):
                pool = {"no-drift": holdout, "prose": shifts["prose"], "noisy-news": shifts["noisy-news"]}[kind_name]
                rows = rng.choice(len(pool["labels"]), size=size, replace=False) if kind_name == "prose" else \
                    by_document(held_docs, size, rng)
                emb = pool["embeddings"][rows]
                started = time.perf_counter()
                _, p = drift.mmd_test(reference["embeddings"], emb, about["bandwidth"], m.permutations, seed=r)
                seconds["mmd"] += time.perf_counter() - started
                hits["mmd"] += p < m.alpha
                sample = reference["embeddings"][rng.choice(len(reference["labels"]), size=4 * size, replace=False)]
                started = time.perf_counter()
                _, p = drift.classifier_test(sample, emb, permutations=49, seed=r)
                seconds["classifier"] += time.perf_counter() - started
                hits["classifier"] += p < m.alpha
            done["rows"][key] = {"batch": kind_name, "texts": size, "resamples": n, "alpha": m.alpha,
                                 **{f"{t}_rate": hits[t] / n for t in hits},
                                 **{f"{t}_seconds": round(seconds[t] / n, 3) for t in seconds}}
            save()
            print(key, done["rows"][key], file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
