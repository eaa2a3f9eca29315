"""The validated splits as MLflow dataset inputs, without loading them.

`mlflow.data.from_pandas` reads a whole split into a DataFrame and hashes it, on every run, reused or not: seconds
per run on a big corpus, to record four small facts. The entity is built here from one streaming pass over the
canonical split file (nerflow writes it; its first line gives the columns): the same name, source, context, schema
and profile (`num_rows`, `num_elements`) as before, and as digest the sha256 of the file (its first 36 hex digits:
MLflow's column is 36 characters), which `sha256sum <split>.jsonl` reproduces. The old digest was pandas' own hash,
which for NER covered no column at all (lists are not hashed).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException

NOT_CONTENT = ("source", "doc")   # where an example came from, not the example (NER: tokens, tags; texts: text, labels)
DIGEST_CHARS = 36                 # MLflow's `datasets.digest` is a String(36)


def log_dataset(client: MlflowClient, run_id: str, path: Path, name: str, context: str) -> None:
    """Record a split as an MLflow dataset input (source path, content digest, row count, schema), in one pass over
    the file and no DataFrame."""
    digest, rows, columns = _scan(Path(path))
    dataset = Dataset(name=name, digest=digest, source_type="local",
                      source=json.dumps({"uri": str(Path(path).resolve())}),
                      schema=json.dumps({"mlflow_colspec": [_colspec(n, v) for n, v in columns.items()]}),
                      profile=json.dumps({"num_rows": rows, "num_elements": rows * len(columns)}))
    inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])]
    try:
        client.log_inputs(run_id, inputs)
    except MlflowException as e:
        # MLflow looks the dataset up, then inserts it: two runs of one experiment logging the same split at once
        # (two `nerflow run` that share the validate key) both insert, and the second hits the unique key. The
        # dataset is there now: logging again links it to this run.
        if not any(m in str(e) for m in ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")):
            raise
        client.log_inputs(run_id, inputs)


def _scan(path: Path) -> tuple[str, int, dict]:
    """(digest, rows, the first row's content columns) of a JSON-lines split: one line per example, no blank lines
    (the task's write_split)."""
    h, rows, head, last = hashlib.sha256(), 0, b"", b"\n"
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            rows += block.count(b"\n")
            if b"\n" not in head:   # the first line, however many blocks it spans
                head += block
            last = block[-1:]
    rows += last != b"\n"   # a last line without its newline is a row too
    first = head.split(b"\n", 1)[0]
    record = json.loads(first) if first.strip() else {}
    return h.hexdigest()[:DIGEST_CHARS], rows, {k: v for k, v in record.items() if k not in NOT_CONTENT}


def _colspec(name: str, value: object) -> dict:
    """MLflow's column spec for a JSON value of a split, as its schema inference spells it for these columns."""
    if isinstance(value, list):
        return {"type": "array", "items": {"type": _scalar(value[0] if value else "")}, "name": name,
                "required": True}
    return {"type": _scalar(value), "name": name, "required": True}


def _scalar(value: object) -> str:
    return {bool: "boolean", int: "long", float: "double"}.get(type(value), "string")
