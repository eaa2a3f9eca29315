"""Documents to predict on, and the JSON lines `nerflow predict` writes: plain functions, no MLflow, no Prefect.

Input is either plain text, one document per line, or JSON lines with a `text` field (every other field passes
through to the output). JSON lines are recognised by a `.jsonl` suffix or by every non-empty line starting with `{`.
The output line carries the model's answer as its task type shapes it (nerflow.task_types: `entities` for NER;
`label`, `score` and `scores`, or `labels` for multi-label, from a classifier). In plain text an empty line is an
empty document (NER: `"entities": []`), so output line N belongs to input line N; in JSON lines an empty line is
skipped, as the format has it. A final newline ends the last line and adds no document. Every problem is a DataError
that names `file:line`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from nerflow.data import DataError, decode_utf8
from nerflow.data import _lines as split_lines  # \n, \r\n and \r only, as the corpus readers split

STDIN = "-"


decode = decode_utf8   # UTF-8 without a BOM, or `name:LINE: not UTF-8 (...)`: the corpus readers' rule


def lines_of(text: str) -> list[str]:
    lines = split_lines(text)
    return lines[:-1] if lines and lines[-1] == "" else lines   # a final newline adds no document


def is_jsonl(name: str, lines: list[str]) -> bool:
    filled = [line for line in lines if line.strip()]
    return name.endswith(".jsonl") or (bool(filled) and all(line.lstrip().startswith("{") for line in filled))


def parse_documents(text: str, name: str) -> list[dict]:
    """Documents as dicts with at least a string `text`; `name` is what errors call the source."""
    lines = lines_of(text)
    if not is_jsonl(name, lines):
        return [{"text": line} for line in lines]
    docs = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{name}:{lineno}: not JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(doc, dict):
            raise DataError(f"{name}:{lineno}: a JSON line must be an object with a \"text\" field, "
                            f"not {type(doc).__name__}")
        if "text" not in doc:
            raise DataError(f"{name}:{lineno}: no \"text\" field (fields: {', '.join(sorted(doc)) or 'none'})")
        if not isinstance(doc["text"], str):
            raise DataError(f"{name}:{lineno}: \"text\" must be a string, not {type(doc['text']).__name__}")
        docs.append(doc)
    return docs


def read_documents(path: str | Path) -> list[dict]:
    """The documents of a file, or of standard input for `-`."""
    if str(path) == STDIN:
        return parse_documents(decode(sys.stdin.buffer.read(), "<stdin>"), "<stdin>")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return parse_documents(decode(path.read_bytes(), str(path)), str(path))


def output_record(doc: dict, fields: dict) -> dict:
    """The input's other fields, then `text` and the answer's fields (which replace input fields of those names)."""
    return {**{k: v for k, v in doc.items() if k != "text" and k not in fields}, "text": doc["text"], **fields}


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """One JSON object per line, written to a temporary file next to `path` and renamed over it: a reader never
    sees a half-written file, and a failure leaves what was there before. Returns the number of records."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for record in records:
                f.write(dumps(record) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def predict_documents(predict: Callable[[list[str]], list], docs: list[dict], kind, batch_size: int = 64,
                      progress: bool = False, stats: dict | None = None) -> Iterator[dict]:
    """Output records, `batch_size` documents per call of `predict` (texts -> one answer per text), the answers
    turned into output fields by the task type `kind` (nerflow.task_types). With `stats`, fills in documents,
    seconds, documents_per_s and the task's counts (`counts`: entities, or texts per label) as it goes (final once
    the iterator is exhausted). A text without a word gets `kind.empty_answer` unasked, unless that is None (a
    classifier answers for every text)."""
    stats = {} if stats is None else stats
    stats.update(documents=0, counts={}, seconds=0.0, documents_per_s=0.0)
    empty = kind.empty_answer
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(docs), unit="doc", dynamic_ncols=True, file=sys.stderr)
    started = time.perf_counter()
    asked = (lambda d: True) if empty is None else (lambda d: bool(d["text"].strip()))
    try:
        for b in range(0, len(docs), batch_size):
            batch = docs[b:b + batch_size]
            # (models registered before the predictor handled empty texts fail on them)
            texts = [d["text"] for d in batch if asked(d)]
            answers = list(predict(texts)) if texts else []
            if len(answers) != len(texts):
                raise RuntimeError(f"the model answered {len(answers)} times for {len(texts)} texts")
            found = iter(answers)
            for doc in batch:
                fields = kind.answer_fields(next(found) if asked(doc) else list(empty))
                stats["documents"] += 1
                for name, n in kind.answer_counts(fields).items():
                    stats["counts"][name] = stats["counts"].get(name, 0) + n
                yield output_record(doc, fields)
            if bar is not None:
                bar.update(len(batch))
            stats["seconds"] = time.perf_counter() - started
            stats["documents_per_s"] = stats["documents"] / stats["seconds"] if stats["seconds"] > 0 else 0.0
    finally:
        if bar is not None:
            bar.close()


def summary(stats: dict, kind) -> str:
    return (f"{stats['documents']} documents, {kind.describe_counts(stats['counts'])} in {stats['seconds']:.2f} s "
            f"({stats['documents_per_s']:.1f} documents/s)")
