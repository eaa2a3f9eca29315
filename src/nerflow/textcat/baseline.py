"""The classical baseline a learning curve compares the transformer with: TF-IDF features (words and bigrams,
sublinear term frequency) and a logistic regression (one-vs-rest for multi-label), trained on the same validated
training split (the same subset) and scored on the same test split by the same function as `evaluate`
(nerflow.textcat.evaluate.score), so the two curves differ only in the model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nerflow.textcat.data import read_split


def tfidf_scores(validated: Path, seed: int) -> dict[str, float]:
    """`test/f1` (macro), `test/accuracy`, ... of TF-IDF + logistic regression on a validate stage's folder."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from nerflow.textcat import evaluate

    labels = json.loads((validated / "labels.json").read_text())
    multi = json.loads((validated / "task.json").read_text()).get("multi_label", False)
    train, test = read_split(validated / "train.jsonl"), read_split(validated / "test.jsonl")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform([d.text for d in train])
    index = {label: i for i, label in enumerate(labels)}
    if multi:
        targets = np.zeros((len(train), len(labels)), dtype=int)
        for row, doc in enumerate(train):
            targets[row, [index[label] for label in doc.labels]] = 1
        model = OneVsRestClassifier(LogisticRegression(max_iter=2000, random_state=seed)).fit(features, targets)
        probs = model.predict_proba(vectorizer.transform([d.text for d in test]))
    else:
        model = LogisticRegression(max_iter=2000, random_state=seed).fit(features, [d.labels[0] for d in train])
        seen = model.predict_proba(vectorizer.transform([d.text for d in test]))
        probs = np.zeros((len(test), len(labels)))   # a label the subset never had gets probability 0
        for col, label in enumerate(model.classes_):
            probs[:, index[label]] = seen[:, col]
    return evaluate.score([d.labels for d in test], probs, labels, multi).metrics("test/")
