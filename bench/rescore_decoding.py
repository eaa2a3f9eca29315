"""What the sequence decoder is worth: one trained model, scored with word-by-word argmax and with the constrained
(Viterbi) IOB2 decoder nerflow uses, on validation and test. No training: it reads the stage cache that a run of
bench/conll2003_nerflow.py left behind.

    python bench/rescore_decoding.py --cache bench/out/nerflow-run/cache --out bench/out/decoding.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers import AutoModelForTokenClassification, AutoTokenizer

from nerflow import cache
from nerflow.ner import data, evaluate, predict, tokenization


def newest_entry(root: Path, stage: str) -> Path:
    """The newest complete output of `stage` in the stage cache (nerflow.cache.list_entries is newest first)."""
    for entry in cache.list_entries(root):
        if entry.stage == stage and entry.complete and cache.lookup(root, stage, entry.key):
            return entry.path
    raise SystemExit(f"no complete {stage} stage output under {root / stage}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=Path("bench/out/nerflow-run/cache"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/decoding.json"))
    args = ap.parse_args()
    validated, tokenized = newest_entry(args.cache, "validate"), newest_entry(args.cache, "tokenize")
    model_dir = newest_entry(args.cache, "train") / "model"
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    pad_id = AutoTokenizer.from_pretrained(model_dir).pad_token_id or 0
    labels = json.loads((validated / "labels.json").read_text())
    result: dict[str, dict[str, float]] = {"argmax": {}, "viterbi": {}}
    for split in ("validation", "test"):
        gold = [s.tags for s in data.read_split(validated / f"{split}.jsonl")]
        windows = tokenization.load_windows(tokenized / split)
        for decode in result:
            tags, _ = predict.predict_windows(model, windows, [len(g) for g in gold], dict(enumerate(labels)),
                                              pad_id, 64, "cpu", None, decode=decode)
            result[decode][f"{split}_f1"] = round(evaluate.score(gold, tags).f1, 4)
    result["model_dir"] = str(model_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
