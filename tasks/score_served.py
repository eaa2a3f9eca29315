"""Score one registered model exactly as it is served. Run as `python -c <this file's source> URI SPLIT OUT` in a
fresh process with an empty working directory: a process that has imported nerflow already would ignore the
model's own bundled code (MLflow adds code_paths to sys.path, but `nerflow` is then taken from sys.modules), so a
model registered by an older nerflow would be scored with today's windows and decoding. Nothing here imports
nerflow; the model's pyfunc does, from its own copy.

SPLIT is a canonical split (JSON lines with "tokens" and "tags"); OUT gets {"labels": [...], "pred": [[tag, ...]]}:
the served spans turned back into IOB2 tags per word, so the caller scores them against the gold tags.
"""
import json
import sys

import mlflow

uri, split_path, out_path = sys.argv[1:4]
model = mlflow.pyfunc.load_model(uri)
labels = list(model.unwrap_python_model().predictor.labels)
with open(split_path, encoding="utf-8") as f:
    sentences = [json.loads(line) for line in f if line.strip()]
texts = [" ".join(s["tokens"]) for s in sentences]
predicted = model.predict(texts, params={"pretokenized": True}) if texts else []
pred = []
for s, spans in zip(sentences, predicted):
    starts, position = [], 0
    for token in s["tokens"]:          # the character offset of each word in the joined text
        starts.append(position)
        position += len(token) + 1
    tags = ["O"] * len(s["tokens"])
    for span in spans:
        first = starts.index(span["start"])
        last = max(i for i, start in enumerate(starts) if start < span["end"])
        tags[first] = f"B-{span['type']}"
        tags[first + 1:last + 1] = [f"I-{span['type']}"] * (last - first)
    pred.append(tags)
with open(out_path, "w", encoding="utf-8") as f:
    json.dump({"labels": labels, "pred": pred}, f)
