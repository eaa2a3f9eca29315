"""What else was tried against the prose miss of issue 26 (docs/benchmarks.md, "Drift"): with the CoNLL-2003
document-context champion, 200 prose sentences are flagged 62% of the time, because in one cross-fitting half the
hold-out holds an 80-sentence football standings page and the model-dependent checks' nulls (batches of 200 texts
drawn by document, some of them half table rows) are wider than 200 prose sentences are far. Each row asks whether
another part of the same model, or another statistic, or another multiple-testing rule, separates the two:

- `training embeddings`: would the training split's documents calibrate the embedding check as they now calibrate
  the descriptors? The MMD^2 null of batches drawn from training documents against the one from hold-out documents
  (percentiles; a narrower null would mean the model sits closer to its training texts).
- `layer L`: the embedding check on the mean-pooled output of each of the encoder's layers (0 = the word
  embeddings, 6 = the last, what the product uses), calibrated on hold-out batches as the product does and alone at
  the product's per-check level alpha / k, with two statistics: `mmd` (the product's MMD^2, an RBF kernel with the
  median bandwidth of that layer's reference vectors) and `low density`, a per-text novelty statistic that a batch
  of a few similar documents cannot move: the share of a batch's texts whose kernel density under the reference
  falls below the reference's own 5th percentile (leave-one-out). Each compares with the whole reference (the
  product's null also resamples the reference's documents), so `mmd` of layer 6 is close to, not the same as, the
  product's embedding check.
- `min-P`: the product's checks with the Westfall-Young single-step min-P adjustment in place of Bonferroni (the
  family-wise level spent on the hold-out batches' smallest p-value over the checks, which gains power when the
  checks move together, as they do on table-heavy batches).

Needs the work folder of bench/drift_conll.py (its profiles: reference, holdout, prose, noisy-news, training):

    python bench/drift_alternatives.py --model bench/out/conll-document-tapt-int8 \
        --work bench/out/drift_conll-doc-tapt --out bench/results/drift_alternatives-doc-tapt-cpu-2026-12-05.json

Each row is written to `--out` when it completes and skipped when already there. No-drift and noisy batches come
from the judged half, by document with replacement (as bench/drift_conll.py draws them), prose batches are seeded
samples of its 3,000 sentences; `--judged` of each per half.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from drift_conll import SIZES, cross_fit_folds, noisy, prose_sentences  # noqa: E402


def layer_embeddings(model: Path, texts: dict[str, list[str]], cache: Path) -> dict[str, np.ndarray]:
    """Mean-pooled output of every layer, (layers + 1, n, hidden) per text set, computed once (`cache`)."""
    if cache.is_file():
        with np.load(cache) as saved:
            return {k: saved[k] for k in saved.files}
    import torch

    from nerflow.drift_profile import load_encoder

    encoder, tokenizer, max_length = load_encoder(model)
    encoder.eval()
    out = {}
    for name, batch in texts.items():
        order = sorted(range(len(batch)), key=lambda k: len(batch[k]))
        states = np.zeros((encoder.config.num_hidden_layers + 1, len(batch), encoder.config.hidden_size), np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), 64):
                rows = order[start:start + 64]
                enc = tokenizer([batch[k] for k in rows], truncation=True, max_length=max_length, padding=True,
                                return_tensors="pt")
                hidden = encoder(**{k: enc[k] for k in ("input_ids", "attention_mask")},
                                 output_hidden_states=True).hidden_states
                mask = enc["attention_mask"].unsqueeze(-1).float()
                for layer, h in enumerate(hidden):
                    states[layer, rows] = ((h * mask).sum(1) / mask.sum(1)).numpy()
        out[name] = states
    np.savez(cache, **out)
    return out


def layer_statistics(layers: dict[str, np.ndarray], layer: int):
    """({statistic: (text set, rows) -> the batch's distance from the reference}, each text's kernel density under
    the reference, the reference's own 5th percentile of it) on one layer's vectors."""
    from nerflow.drift_calibration import _rbf
    from nerflow.two_sample import median_bandwidth

    r = layers["reference"][layer]
    bw = median_bandwidth(r, seed=0)
    kernel = _rbf(r, r, bw)
    r_mean = kernel.mean()
    cut = float(np.percentile((kernel.sum(1) - 1) / (len(r) - 1), 5))   # leave-one-out densities
    texts = {name: layers[name][layer] for name in ("holdout", "prose", "noisy-news")}
    density = {name: _rbf(e, r, bw).mean(1) for name, e in texts.items()}

    def mmd(name: str, rows) -> float:
        e = texts[name][rows]
        return float(_rbf(e, e, bw).mean() - 2 * _rbf(e, r, bw).mean() + r_mean)

    def low_density(name: str, rows) -> float:
        return float(np.mean(density[name][rows] < cut))

    return {"mmd": mmd, "low density": low_density}, density, cut


def p_value(null: np.ndarray, value: float) -> float:
    """As nerflow.drift_calibration: the share of the null at least as far, counting the batch itself (NaNs, a
    check that could not run, are left out of the null and give a batch p = 1)."""
    null = null[~np.isnan(null)]
    if np.isnan(value):
        return 1.0
    return float((1 + np.sum(null >= value - 1e-9 * abs(value))) / (1 + null.size))


def null_p_values(null: np.ndarray) -> np.ndarray:
    """Each null batch's p-value against the other null batches, as a judged batch's against all of them."""
    null = np.asarray(null, dtype=np.float64)
    finite = null[~np.isnan(null)]
    return np.array([1.0 if np.isnan(x) else np.sum(finite >= x - 1e-9 * abs(x)) / finite.size for x in null])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="the served model folder bench/drift_conll.py used")
    ap.add_argument("--work", type=Path, required=True, help="bench/drift_conll.py's work folder (its profiles)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--judged", type=int, default=100, help="judged batches of each kind per cross-fitting half")
    args = ap.parse_args(argv)

    from nerflow import drift_calibration, drift_profile, task_types
    from nerflow.config import load_config
    from nerflow.drift_calibration import _rbf
    from nerflow.flows.commands.predict import load_folder

    cfg = load_config(ROOT / "configs" / "conll2003.yaml", [f"data.dir={args.data_dir / 'conll2003'}"])
    m, work = cfg.monitor, args.work
    done = json.loads(args.out.read_text()) if args.out.is_file() else {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": os.path.relpath(args.model, ROOT), "judged_per_half": args.judged, "rows": {}}

    def save(key: str, row: dict) -> None:
        done["rows"][key] = row
        args.out.write_text(json.dumps(done, indent=1) + "\n")
        print(key, json.dumps(row), file=sys.stderr, flush=True)

    reference, about = drift_profile.load(work, "reference")
    holdout, _ = drift_profile.load(work, "holdout")
    prose, _ = drift_profile.load(work, "prose")
    noisy_news, _ = drift_profile.load(work, "noisy-news")
    pool = drift_profile.load_training(work)
    corpus = task_types.entry("token-classification", "validate").load_corpus(cfg.data)
    pairs = task_types.entry("token-classification", "reference").texts_of(corpus["validation"])
    ref_rows, held_rows = drift_profile.split_documents([d for _, d in pairs], m.reference_share, 10**6, cfg.seed)
    held_docs = [pairs[k][1] for k in held_rows]
    folds, number = cross_fit_folds(held_docs, cfg.seed)
    ref_numbers: dict[str, int] = {}
    ref_docs = [ref_numbers.setdefault(pairs[k][1], len(ref_numbers)) for k in ref_rows]
    h, ref_e = about["bandwidth"], reference["embeddings"]

    def halves(size: int):
        """(calibrating rows, their document numbers, judged no-drift batches as hold-out rows, prose rows)."""
        for calib, judged in ((0, 1), (1, 0)):
            judged_docs = [number[held_docs[r]] for r in folds[judged]]
            batches = drift_calibration.holdout_batches(judged_docs, size, args.judged, seed=1000 + size + judged)
            rng = np.random.default_rng(size + judged)
            yield (folds[calib], [number[held_docs[r]] for r in folds[calib]],
                   [[folds[judged][k] for k in rows] for rows in batches],
                   [rng.choice(len(prose["labels"]), size, replace=False) for _ in batches])

    def rates(flags: dict[str, list[bool]]) -> dict[str, float]:
        return {kind: round(float(np.mean(v)), 4) for kind, v in flags.items()}

    # 1. the training split's documents as the embedding check's null
    if "training embeddings" not in done["rows"]:
        train_pairs = task_types.entry("token-classification", "reference").texts_of(corpus["train"])
        if not (work / "training-sample.npz").is_file():
            rows, _ = drift_profile.split_documents([d for _, d in train_pairs], 1.0, 3000, cfg.seed)
            predict, kind = load_folder(args.model, str(args.model))
            profile = drift_profile.profile_texts([train_pairs[r][0] for r in rows], args.model, predict, kind)
            drift_profile.save(profile, work, "training-sample", {"documents": [train_pairs[r][1] for r in rows]})
        train, train_about = drift_profile.load(work, "training-sample")
        numbers: dict[str, int] = {}
        train_docs = [numbers.setdefault(d, len(numbers)) for d in train_about["documents"]]
        ref_mean = _rbf(ref_e, ref_e, h).mean()
        row = {"training_texts": len(train_docs), "training_documents": len(numbers)}
        for size in (50, 200):
            for name, emb, docs in (("holdout", holdout["embeddings"], [number[d] for d in held_docs]),
                                    ("training", train["embeddings"], train_docs)):
                null = [float(_rbf(emb[b], emb[b], h).mean() - 2 * _rbf(emb[b], ref_e, h).mean() + ref_mean)
                        for b in drift_calibration.holdout_batches(docs, size, 400, seed=size)]
                row[f"{name} {size}: MMD^2 p50/p90/p95/p99"] = [round(float(q), 4)
                                                                for q in np.percentile(null, [50, 90, 95, 99])]
        save("training embeddings", row)

    # 2. the embedding check's two statistics on each layer
    held_texts = [pairs[k][0] for k in held_rows]
    layers = layer_embeddings(args.model, {
        "reference": [pairs[k][0] for k in ref_rows], "holdout": held_texts,
        "prose": prose_sentences(args.data_dir / "unlabeled_en" / "combined_pd_ccby.txt", 3000, 1),
        "noisy-news": [noisy(t, random.Random(k)) for k, t in enumerate(held_texts)]}, work / "layers.npz")
    level = {size: drift_calibration.holdout_null(reference, holdout, [number[d] for d in held_docs], size, m.alpha,
                                                  10, pool=pool).per_check for size in SIZES}
    for layer in range(layers["reference"].shape[0]):
        key = f"layer {layer}"
        if key in done["rows"]:
            continue
        statistics, density, cut = layer_statistics(layers, layer)
        row = {"per_check_level": level, "low density: share below the reference's 5th percentile": {
            name: round(float(np.mean(d < cut)), 4) for name, d in density.items()}}
        table = [k for k, d in enumerate(held_docs) if d.endswith("#120")]
        row["low density: standings page #120"] = round(float(np.mean(density["holdout"][table] < cut)), 4)
        for size in SIZES:
            for half, (calib, calib_docs, judged, prose_rows) in enumerate(halves(size)):
                draws = drift_calibration.holdout_batches(calib_docs, size, m.holdout_batches, seed=size + half)
                for stat, of in statistics.items():
                    null = np.array([of("holdout", [calib[k] for k in b]) for b in draws])
                    row[f"{stat} {size} calibrated by half {half}"] = rates({
                        "no-drift": [p_value(null, of("holdout", b)) < level[size] for b in judged],
                        "prose": [p_value(null, of("prose", p)) < level[size] for p in prose_rows],
                        "noisy-news": [p_value(null, of("noisy-news", b)) < level[size] for b in judged]})
        save(key, row)

    # 4. Westfall-Young min-P against Bonferroni, the product's checks and null otherwise
    for size in SIZES:
        key = f"min-P {size}"
        if key in done["rows"]:
            continue
        row = {}
        for half, (calib, calib_docs, judged, prose_rows) in enumerate(halves(size)):
            null = drift_calibration.holdout_null(reference, drift_profile.subset(holdout, calib), calib_docs, size,
                                                  m.alpha, m.holdout_batches, seed=size + half,
                                                  bandwidth=h, reference_docs=ref_docs, pool=pool)
            min_p = np.min([null_p_values(v) for v in null.null.values()], axis=0)
            flags: dict[str, dict[str, list[bool]]] = {"bonferroni": {}, "min-P": {}}
            for kind, batches in (("no-drift", [drift_profile.subset(holdout, b) for b in judged]),
                                  ("prose", [drift_profile.subset(prose, p) for p in prose_rows]),
                                  ("noisy-news", [drift_profile.subset(noisy_news, b) for b in judged])):
                decisions = [drift_calibration.decide(null, b) for b in batches]
                flags["bonferroni"][kind] = [d.drift for d in decisions]
                smallest = [min(c.p_value for c in d.checks if not np.isnan(c.p_value)) for d in decisions]
                flags["min-P"][kind] = [(1 + np.sum(min_p <= p + 1e-12)) / (1 + min_p.size) < m.alpha
                                        for p in smallest]
            row[f"calibrated by half {half}"] = {rule: rates(f) for rule, f in flags.items()}
        save(key, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
