"""Score one registered text classifier exactly as it is served (the text-classification twin of score_served.py,
run the same way: `python -c <this file's source> URI SPLIT OUT` in a fresh process that has not imported nerflow,
so the model's own bundled code answers).

SPLIT is a canonical split (JSON lines with "text" and "labels"); OUT gets {"labels": [...], "multi_label": bool,
"pred": [[label, ...]]}: the served labels per text, which the caller scores against the gold labels.
"""
import json
import sys

import mlflow

uri, split_path, out_path = sys.argv[1:4]
model = mlflow.pyfunc.load_model(uri)
classifier = model.unwrap_python_model().classifier
with open(split_path, encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f if line.strip()]
answers = model.predict(texts) if texts else []
pred = [a["labels"] if "labels" in a else [a["label"]] for a in answers]
with open(out_path, "w", encoding="utf-8") as f:
    json.dump({"labels": list(classifier.labels), "multi_label": bool(classifier.meta["multi_label"]), "pred": pred}, f)
