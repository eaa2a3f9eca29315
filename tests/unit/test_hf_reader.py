"""The Hugging Face dataset reader, offline: a local dataset folder stands in for a hub id (same loader)."""
from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from nerflow.ner.data import DataError, read_hf

NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_read_hf_maps_classlabel_ids_to_tag_names(tmp_path):
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=NAMES))})
    rows = {"tokens": [["Maria", "Lopez", "visited", "Berlin"], ["Nothing", "here"]],
            "ner_tags": [[1, 2, 0, 3], [0, 0]]}
    for split in ("train", "validation", "test"):
        Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    sentences = read_hf(str(tmp_path), "validation")
    assert [s.tokens for s in sentences] == rows["tokens"]
    assert [s.tags for s in sentences] == [["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"]]
    assert sentences[1].source == f"{tmp_path}[validation]:2"


def test_read_hf_keeps_string_tags(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"tokens": ["Anna", "said"], "ner_tags": ["B-PER", "O"]}\n')
    (sentence,) = read_hf(str(tmp_path), "train")
    assert sentence.tags == ["B-PER", "O"]


def test_read_hf_without_the_tag_column_names_it(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"tokens": ["Anna", "said"], "labels": ["B-PER", "O"]}\n')
    with pytest.raises(DataError, match=r"\[train\]: no column 'ner_tags' \(it has tokens, labels\)"):
        read_hf(str(tmp_path), "train")
