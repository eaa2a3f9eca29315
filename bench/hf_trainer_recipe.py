"""Baseline: the plain Hugging Face Trainer recipe (run_ner.py defaults) on CoNLL-2003, scored like nerflow.

run_ner.py defaults: lr 5e-5, batch 8, 3 epochs, fp32, no warmup, no weight decay, linear decay, first sub-token
labels, dynamic padding, truncation at the tokenizer's limit. Words lost to truncation count as `O` predictions, so
both systems are scored on every gold word with the same scorer (nerflow.ner.evaluate.score: seqeval strict IOB2).

    python bench/hf_trainer_recipe.py --data-dir ../shared/data/conll2003 --out bench/out/recipe.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
)

from nerflow.models import resolve_model
from nerflow.ner.data import label_list, read_conll


def encode(tokenizer, sentences, label_to_id):
    features = []
    for s in sentences:
        enc = tokenizer(s.tokens, is_split_into_words=True, truncation=True)
        labels, prev = [], None
        for w in enc.word_ids():
            labels.append(-100 if w is None or w == prev else label_to_id[s.tags[w]])
            prev = w
        features.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    return features


def word_predictions(logits, features, sentences, id_to_label):
    preds = []
    for lg, feat, s in zip(logits, features, sentences):
        ids = np.argmax(lg[: len(feat["labels"])], axis=-1)
        tags = [id_to_label[i] for i, lab in zip(ids, feat["labels"]) if lab != -100]
        preds.append(tags + ["O"] * (len(s.tokens) - len(tags)))  # truncated words: predicted O
    return preds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/conll2003"))
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=Path("bench/out/recipe.json"))
    args = ap.parse_args()

    started = time.time()
    splits = {n: read_conll(args.data_dir / f) for n, f in
              [("train", "train.txt"), ("validation", "valid.txt"), ("test", "test.txt")]}
    if args.limit_train:
        splits["train"] = splits["train"][: args.limit_train]
    labels = label_list(splits)
    label_to_id = {t: i for i, t in enumerate(labels)}
    path = resolve_model(args.model, Path(".cache/nerflow"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_to_id)
    train = encode(tokenizer, splits["train"], label_to_id)
    test = encode(tokenizer, splits["test"], label_to_id)
    targs = TrainingArguments(output_dir=str(args.out.parent / "recipe-trainer"), learning_rate=5e-5,
                              per_device_train_batch_size=8, per_device_eval_batch_size=8,
                              num_train_epochs=args.epochs, seed=args.seed, save_strategy="no", logging_steps=200,
                              report_to=[])
    trainer = Trainer(model=model, args=targs, train_dataset=train, processing_class=tokenizer,
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    t0 = time.time()
    trainer.train()
    train_s = time.time() - t0
    logits = trainer.predict(test).predictions
    preds = word_predictions(logits, test, splits["test"], labels)
    gold = [s.tags for s in splits["test"]]
    f1 = f1_score(gold, preds, mode="strict", scheme=IOB2)
    result = {"system": "hf-trainer-recipe", "model": args.model, "test_f1": round(float(f1), 4),
              "train_seconds": round(train_s, 1), "wall_seconds": round(time.time() - started, 1),
              "epochs": args.epochs, "seed": args.seed, "train_sentences": len(splits["train"]),
              "torch_threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
