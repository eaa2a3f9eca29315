"""The classical baseline a learning curve compares the transformer with: TF-IDF features (words and bigrams,
sublinear term frequency) and a logistic regression (one-vs-rest for multi-label), trained on the same validated
training split (the same subset) and scored on the same test split by the same function as `evaluate`
(nerflow.textcat.evaluate.score), so the two curves differ only in the model. Its regularisation C is chosen on the
validation split, as the transformer's best epoch is: with scikit-learn's default (C = 1) the baseline scored 0.855
test macro F1 on the 1,600 movie reviews where C chosen on validation (30) gives 0.870 (docs/benchmarks.md), and a
curve against a weakened baseline would flatter the transformer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nerflow.textcat.data import read_split

C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)   # inverse regularisation strengths tried; the best on validation macro F1


def tfidf_scores(validated: Path, seed: int) -> dict[str, float]:
    """`test/f1` (macro), `test/accuracy`, ... of TF-IDF + logistic regression on a validate stage's folder, with
    `val/f1` and `C` of the C chosen on validation (the first of C_GRID on a tie)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from nerflow.textcat import evaluate

    labels = json.loads((validated / "labels.json").read_text())
    multi = json.loads((validated / "task.json").read_text()).get("multi_label", False)
    train = read_split(validated / "train.jsonl")
    splits = {s: read_split(validated / f"{s}.jsonl") for s in ("validation", "test")}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform([d.text for d in train])
    index = {label: i for i, label in enumerate(labels)}

    def scored(c: float, split: str, prefix: str) -> dict[str, float]:
        texts = vectorizer.transform([d.text for d in splits[split]])
        if multi:
            targets = np.zeros((len(train), len(labels)), dtype=int)
            for row, doc in enumerate(train):
                targets[row, [index[label] for label in doc.labels]] = 1
            model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000, random_state=seed))
            probs = model.fit(features, targets).predict_proba(texts)
        else:
            model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
            seen = model.fit(features, [d.labels[0] for d in train]).predict_proba(texts)
            probs = np.zeros((len(splits[split]), len(labels)))   # a label the subset never had: probability 0
            for col, label in enumerate(model.classes_):
                probs[:, index[label]] = seen[:, col]
        return evaluate.score([d.labels for d in splits[split]], probs, labels, multi).metrics(prefix)

    on_validation = {c: scored(c, "validation", "val/")["val/f1"] for c in C_GRID}
    best = max(C_GRID, key=lambda c: (on_validation[c], -C_GRID.index(c)))
    return {**scored(best, "test", "test/"), "val/f1": on_validation[best], "C": best}
