"""How many integration steps `nerflow explain` needs: mean and max |convergence delta| and seconds per explanation
for several step counts, on real models (nerflow.explain.DEFAULT_STEPS was chosen from this).

    python bench/explain_steps.py --ner .cache/nerflow/train/<key>/model --ner-text data/generated/quickstart/test.txt
    python bench/explain_steps.py --textcat-minilm bench/out/explain-textcat --reviews ../shared/data/movie_reviews

`--ner`: a NER model folder nerflow trained (the quickstart's), explained on the first sentences of a CoNLL file.
`--textcat-minilm DIR`: builds the offline MiniLM with a random 2-label head there (a random head is enough to
measure how well the integral converges), explained on the first words of movie reviews.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from nerflow.explain import Explanation

STEPS = (8, 16, 32, 64, 128)


def conll_sentences(path: Path, n: int) -> list[str]:
    sentences, words = [], []
    for line in path.read_text().splitlines() + [""]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(" ".join(words))
                words = []
        else:
            words.append(line.split()[0])
    return sentences[:n]


def minilm_classifier(out: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nerflow.models import resolve_model
    from nerflow.textcat.predict import write_meta

    if not (out / "nerflow.json").is_file():
        source = resolve_model("all-MiniLM-L6-v2", out.parent / "cache")
        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_pretrained(source, num_labels=2).save_pretrained(out)
        AutoTokenizer.from_pretrained(source).save_pretrained(out)
        write_meta(out, labels=["neg", "pos"], multi_label=False, max_length=128, stride=32, long_documents="head",
                   head_share=0.5, pool="mean")
    return out


def measure(explain, texts: list[str]) -> list[dict]:
    rows = []
    for steps in STEPS:
        started, found = time.perf_counter(), []
        for text in texts:
            found.extend(explain(text, steps))
        seconds = time.perf_counter() - started
        deltas = [abs(e.delta) for e in found]
        rows.append({"steps": steps, "explanations": len(found), "mean_abs_delta": statistics.fmean(deltas),
                     "max_abs_delta": max(deltas), "mean_abs_change": mean_change(found),
                     "seconds_per_explanation": seconds / len(found)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def mean_change(found: list[Explanation]) -> float:
    """The mean |target(text) - target(baseline)|: what the deltas are a share of."""
    return statistics.fmean(abs(e.value - e.baseline_value) for e in found)


def main() -> None:
    from nerflow.ner.explain import load_explainer as ner_explainer
    from nerflow.textcat.explain import load_explainer as textcat_explainer

    ap = argparse.ArgumentParser()
    ap.add_argument("--ner", type=Path)
    ap.add_argument("--ner-text", type=Path, default=Path("data/generated/quickstart/test.txt"))
    ap.add_argument("--textcat-minilm", type=Path)
    ap.add_argument("--reviews", type=Path, default=Path("../shared/data/movie_reviews"))
    ap.add_argument("--texts", type=int, default=20)
    args = ap.parse_args()
    if args.ner:
        print("ner", args.ner)
        measure(ner_explainer(args.ner), conll_sentences(args.ner_text, args.texts))
    if args.textcat_minilm:
        print("textcat (random head)", args.textcat_minilm)
        files = sorted((args.reviews / "pos").glob("*.txt"))[: args.texts]
        texts = [" ".join(f.read_text().split()[:80]) for f in files]
        measure(textcat_explainer(minilm_classifier(args.textcat_minilm)), texts)


if __name__ == "__main__":
    main()
