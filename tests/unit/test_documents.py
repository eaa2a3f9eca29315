"""Reading documents for `nerflow predict` (plain text or JSON lines) and writing its JSON lines atomically."""
from __future__ import annotations

import json

import pytest

from nerflow.data import DataError
from nerflow.documents import output_record, predict_documents, read_documents, summary, write_jsonl
from nerflow.ner.task import TASK as NER


def test_plain_text_is_one_document_per_line_and_keeps_empty_lines(tmp_path):
    f = tmp_path / "docs.txt"
    f.write_text("Anna said hi .\n\n  {not json} but text\r\nlast\n")
    assert [d["text"] for d in read_documents(f)] == ["Anna said hi .", "", "  {not json} but text", "last"]


def test_no_final_newline_and_a_bom(tmp_path):
    f = tmp_path / "docs.txt"
    f.write_bytes("\ufeffone\ntwo".encode())
    assert read_documents(f) == [{"text": "one"}, {"text": "two"}]


def test_json_lines_by_content_keep_other_fields_and_skip_empty_lines(tmp_path):
    f = tmp_path / "docs.txt"
    f.write_text('{"id": 1, "text": "Anna"}\n\n {"id": 2, "text": "", "meta": {"a": [1]}}\n')
    docs = read_documents(f)
    assert docs == [{"id": 1, "text": "Anna"}, {"id": 2, "text": "", "meta": {"a": [1]}}]
    assert output_record(docs[1], NER.answer_fields([])) == {"id": 2, "meta": {"a": [1]}, "text": "", "entities": []}


@pytest.mark.parametrize("content,message", [
    ('{"text": "a"}\n{"text": "b"\n', r"docs.jsonl:2: not JSON"),
    ('{"text": "a"}\n\n{"id": 3}\n', r'docs.jsonl:3: no "text" field \(fields: id\)'),
    ('{"text": 5}\n', r'docs.jsonl:1: "text" must be a string'),
    ('["text"]\n', r"docs.jsonl:1: a JSON line must be an object"),
    ("plain words\n", r"docs.jsonl:1: not JSON"),          # the .jsonl suffix decides
])
def test_bad_json_lines_name_file_and_line(tmp_path, content, message):
    f = tmp_path / "docs.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        read_documents(f)


def test_not_utf8_names_the_line(tmp_path):
    f = tmp_path / "docs.txt"
    f.write_bytes(b"fine\nalso fine\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"docs.txt:3: not UTF-8"):
        read_documents(f)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_documents(tmp_path / "nope.txt")


def test_write_jsonl_is_atomic(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")

    def records():
        yield {"text": "a", "entities": []}
        raise RuntimeError("model broke")

    with pytest.raises(RuntimeError):
        write_jsonl(out, records())
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert write_jsonl(out, [{"text": "é", "entities": []}]) == 1
    assert json.loads(out.read_text(encoding="utf-8")) == {"text": "é", "entities": []}


def test_predict_documents_batches_and_counts():
    calls = []

    def predict(texts):
        calls.append(len(texts))
        span = {"type": "X", "start": 0, "end": 1, "text": "a", "score": 1.0}
        return [[span] * len(t.split()) for t in texts]

    docs = [{"text": "a b", "id": i} for i in range(5)] + [{"text": " ", "id": 5}]
    stats: dict = {}
    out = list(predict_documents(predict, docs, NER, batch_size=2, stats=stats))
    assert calls == [2, 2, 1] and [r["id"] for r in out] == list(range(6))   # a blank text is not sent
    assert out[5]["entities"] == [] and stats["documents"] == 6 and stats["counts"] == {"entities": 10}
    assert stats["documents_per_s"] > 0
    assert summary(stats, NER).startswith("6 documents, 10 entities in ")
