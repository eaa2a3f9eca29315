"""Text-classification readers, the stratified split and the data fingerprint, on tiny files written per test."""
from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from nerflow.data import DataError
from nerflow.textcat.config import TextcatDataConfig as DataConfig
from nerflow.textcat.data import (
    Document,
    fingerprint,
    input_paths,
    label_list,
    load_corpus,
    read_csv,
    read_folders,
    read_hf,
    read_jsonl,
    read_split,
    split_stratified,
    write_split,
)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def movie_reviews(root: Path) -> Path:
    """The ../shared/data/movie_reviews layout: a README at the top, one folder per label, one review per file."""
    write(root / "README", "Polarity data v2.0\n")
    write(root / "pos" / "cv001_2.txt", "a joyous film .\n")
    write(root / "pos" / "cv000_1.txt", "great acting , great plot .\n")
    write(root / "neg" / "cv002_3.txt", "dull and long .\n")
    write(root / "neg" / ".DS_Store", b"\x00\x01")
    return root


# --- readers -----------------------------------------------------------------------------------------------------

def test_csv_quoted_commas_and_newlines_with_bom_and_crlf(tmp_path):
    path = write(tmp_path / "train.csv", b'\xef\xbb\xbftext,label\r\n"Hello, world",pos\r\n'
                                         b'"line one\r\nline two, still one text",neg\r\n\r\nplain, ,pos\r\n')
    with pytest.raises(DataError, match=r"train\.csv:6: 3 field\(s\) but the header has 2; quote fields"):
        read_csv(path, DataConfig(), ",")
    write(path, b'\xef\xbb\xbftext,label\r\n"Hello, world",pos\r\n"line one\r\nline two, still one text",neg\r\n'
                b'\r\nplain, pos \r\n')
    docs = read_csv(path, DataConfig(), ",")
    assert [d.text for d in docs] == ["Hello, world", "line one\r\nline two, still one text", "plain"]
    assert [d.labels for d in docs] == [["pos"], ["neg"], ["pos"]]
    assert [d.source for d in docs] == [f"{path}:2", f"{path}:3", f"{path}:6"]


def test_tsv_reads_configured_columns_and_keeps_an_empty_label_for_validation(tmp_path):
    path = write(tmp_path / "dev.tsv", "id\tsentiment\tbody\n1\tpos\tgood, really\n2\t\tno label here\n")
    docs = read_csv(path, DataConfig(text_column="body", label_column="sentiment"), "\t")
    assert docs == [Document("good, really", ["pos"], f"{path}:2"), Document("no label here", [], f"{path}:3")]


def test_csv_multi_label_splits_the_cell(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\nvote tonight,politics| sports ||\nquiet day,\n")
    docs = read_csv(path, DataConfig(multi_label=True), ",")
    assert [d.labels for d in docs] == [["politics", "sports"], []]


def test_csv_missing_columns_are_named_with_their_config_key(tmp_path):
    path = write(tmp_path / "train.csv", "text,sentiment\nok,pos\n")
    with pytest.raises(DataError) as e:
        read_csv(path, DataConfig(), ",")
    assert str(e.value) == f"{path}:1: no column 'label' (data.label_column); the header has: text, sentiment"
    with pytest.raises(DataError) as e:
        read_csv(path, DataConfig(text_column="review", label_column="sentiment"), ",")
    assert str(e.value) == f"{path}:1: no column 'review' (data.text_column); the header has: text, sentiment"


def test_jsonl_single_and_multi_label(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "Gut", "label": "pos"}\n\n{"text": "ohne Label"}\n'
                                           '{"text": "Zahl", "label": 1}\n')
    assert read_jsonl(path, DataConfig()) == [Document("Gut", ["pos"], f"{path}:1"),
                                              Document("ohne Label", [], f"{path}:3"),
                                              Document("Zahl", ["1"], f"{path}:4")]
    path = write(tmp_path / "multi.jsonl", '{"body": "a", "labels": ["x", "y"]}\n{"body": "b", "labels": []}\n'
                                           '{"body": "c", "tags": "x|z"}\n')
    docs = read_jsonl(path, DataConfig(multi_label=True, text_column="body", label_column="tags"))
    assert [d.labels for d in docs] == [["x", "y"], [], ["x", "z"]]


@pytest.mark.parametrize("line, message", [
    ('{"text": "ok", "label": "pos"', r"train\.jsonl:3: not valid JSON"),
    ('["ok", "pos"]', r"train\.jsonl:3: expected an object with 'text' and 'label', got a list"),
    ('{"body": "ok", "label": "pos"}', r"train\.jsonl:3: no field 'text' \(data\.text_column\); the object has: "
                                       "body, label"),
    ('{"text": null, "label": "pos"}', r"train\.jsonl:3: field 'text' must be a string, got null"),
])
def test_jsonl_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path / "train.jsonl", '{"text": "fine", "label": "pos"}\n\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_jsonl(path, DataConfig())


def test_folders_read_like_movie_reviews(tmp_path):
    root = movie_reviews(tmp_path / "movie_reviews")
    docs = read_folders(root, DataConfig())
    assert [(d.labels, Path(d.source).name) for d in docs] == [
        (["neg"], "cv002_3.txt"), (["pos"], "cv000_1.txt"), (["pos"], "cv001_2.txt")]
    assert docs[1] == Document("great acting , great plot .\n", ["pos"], str(root / "pos" / "cv000_1.txt"))


def test_folders_bad_layouts(tmp_path):
    with pytest.raises(DataError, match="^" + re.escape(str(tmp_path / 'nowhere')) + ": folder not found"):
        read_folders(tmp_path / "nowhere", DataConfig())
    root = tmp_path / "reviews"
    write(root / "README", "no label folders yet\n")
    with pytest.raises(DataError, match="^" + re.escape(str(root)) + ": no label folders"):
        read_folders(root, DataConfig())
    (root / "pos").mkdir()
    (root / "neg").mkdir()
    with pytest.raises(DataError) as e:
        read_folders(root, DataConfig())
    assert str(e.value) == f"{root}: no documents in its label folders (neg, pos)"
    write(root / "pos" / "a.txt", "fine\n")
    with pytest.raises(DataError, match="^" + re.escape(str(root / 'neg')) + ": label folder has no documents"):
        read_folders(root, DataConfig())
    with pytest.raises(DataError, match="^" + re.escape(str(root)) + ": data.multi_label=true is not possible"):
        read_folders(root, DataConfig(multi_label=True))


def test_hf_local_parquet_maps_class_ids_and_names_missing_columns(tmp_path):
    from datasets import ClassLabel, Dataset, Features, List, Value

    single = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    Dataset.from_dict({"text": ["bad", "good", "hidden"], "label": [0, 1, -1]},
                      features=single).to_parquet(str(tmp_path / "single" / "train.parquet"))
    docs = read_hf(str(tmp_path / "single"), "train", DataConfig())
    assert [(d.text, d.labels) for d in docs] == [("bad", ["neg"]), ("good", ["pos"]), ("hidden", [])]
    assert docs[2].source == f"{tmp_path / 'single'}[train]:3"

    multi = Features({"body": Value("string"), "topics": List(ClassLabel(names=["art", "war"]))})
    Dataset.from_dict({"body": ["x", "y"], "topics": [[0, 1], []]},
                      features=multi).to_parquet(str(tmp_path / "multi" / "train.parquet"))
    docs = read_hf(str(tmp_path / "multi"), "train", DataConfig(text_column="body", label_column="topics",
                                                                  multi_label=True))
    assert [d.labels for d in docs] == [["art", "war"], []]
    with pytest.raises(DataError) as e:
        read_hf(str(tmp_path / "multi"), "train", DataConfig(text_column="body"))
    assert str(e.value) == (f"{tmp_path / 'multi'}[train]: no column 'label' (data.label_column); the dataset has: "
                            "body, topics")


def test_hf_load_corpus_splits_off_a_missing_validation_split(tmp_path):
    from datasets import Dataset

    rows = {"text": [f"review {i}" for i in range(20)], "label": ["pos", "neg"] * 10}
    Dataset.from_dict(rows).to_parquet(str(tmp_path / "train.parquet"))
    Dataset.from_dict({"text": ["held out"], "label": ["pos"]}).to_parquet(str(tmp_path / "test.parquet"))
    corpus = load_corpus(DataConfig(format="hf", hf_dataset=str(tmp_path), split={"validation": 0.2}))
    assert [d.text for d in corpus["test"]] == ["held out"]
    assert Counter(d.labels[0] for d in corpus["validation"]) == {"pos": 2, "neg": 2}
    assert len(corpus["train"]) == 16
    with pytest.raises(DataError, match="data.hf_dataset"):
        load_corpus(DataConfig(format="hf"))


# --- the stratified split ----------------------------------------------------------------------------------------

def docs_with(counts: dict[str, int]) -> list[Document]:
    return [Document(f"{label} text {i}", [label], f"train.csv:{i}") for label, n in counts.items() for i in range(n)]


def test_split_keeps_each_labels_share_per_split():
    counts = {"a": 57, "b": 31, "c": 12}
    corpus = split_stratified(docs_with(counts), validation=0.2, test=0.1, seed=1)
    for split, fraction in (("validation", 0.2), ("test", 0.1)):
        got = Counter(d.labels[0] for d in corpus[split])
        for label, n in counts.items():
            assert abs(got[label] - n * fraction) <= 1, (split, label, got)
    assert sum(map(len, corpus.values())) == 100


def test_split_keeps_duplicates_together_and_is_seeded():
    docs = docs_with({"a": 30, "b": 30}) + [Document("same text", ["a"], f"train.csv:{100 + i}") for i in range(4)]
    corpus = split_stratified(docs, 0.2, 0.2, seed=7)
    holding = [split for split, split_docs in corpus.items() if any(d.text == "same text" for d in split_docs)]
    assert len(holding) == 1 and sum(d.text == "same text" for d in corpus[holding[0]]) == 4
    assert split_stratified(docs, 0.2, 0.2, seed=7) == corpus
    assert split_stratified(docs, 0.2, 0.2, seed=8) != corpus


def test_split_interleaves_classes_so_a_limit_keeps_both():
    """Folders list one label after the other; the first N of each split (`limit_*`) must not be a single class."""
    corpus = split_stratified(docs_with({"neg": 200, "pos": 200}), 0.1, 0.1, seed=13)
    assert Counter(d.labels[0] for d in corpus["train"][:20]).keys() == {"neg", "pos"}


def test_split_multi_label_is_stratified_by_label_set():
    docs = [Document(f"{'+'.join(labels)} {i}", labels, f"t:{i}")
            for labels in (["a", "b"], ["a"], ["b"], ["b", "a"]) for i in range(10)]
    corpus = split_stratified(docs, 0.0, 0.25, seed=3)
    # {a,b} is one stratum of 20 (label order does not matter): 5 to test; {a} and {b}: 10 each, round(2.5) = 2
    assert Counter(tuple(sorted(d.labels)) for d in corpus["test"]) == {("a", "b"): 5, ("a",): 2, ("b",): 2}


def test_split_too_few_documents_names_the_keys():
    with pytest.raises(DataError, match=r"data\.split\.validation=0\.1 and data\.split\.test=0\.1.*data\.validation"):
        split_stratified(docs_with({"a": 3, "b": 2}), 0.1, 0.1, seed=0)


# --- fingerprint, load_corpus, split files -----------------------------------------------------------------------

def test_fingerprint_of_folders_follows_label_names_not_location(tmp_path):
    root = movie_reviews(tmp_path / "a" / "reviews")
    before = fingerprint(DataConfig(format="folders", dir=root, train="."))
    moved = tmp_path / "b" / "elsewhere"
    shutil.copytree(root, moved)
    assert fingerprint(DataConfig(format="folders", dir=moved.parent, train="elsewhere")) == before
    (moved / "pos").rename(moved / "positive")
    assert fingerprint(DataConfig(format="folders", dir=moved.parent, train="elsewhere")) != before
    write(root / "README", "edited, but not a document\n")
    assert fingerprint(DataConfig(format="folders", dir=root, train=".")) == before


def test_fingerprint_of_files_and_hf(tmp_path):
    write(tmp_path / "train.csv", "text,label\nok,pos\n")
    cfg = DataConfig(format="csv", dir=tmp_path, train="train.csv", test="test.csv")
    assert input_paths(cfg) == {"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"}
    with pytest.raises(DataError, match="^" + re.escape(str(tmp_path / 'test.csv')) + ": file not found"):
        fingerprint(cfg)
    write(tmp_path / "test.csv", "text,label\nfine,neg\n")
    first = fingerprint(cfg)
    write(tmp_path / "test.csv", "text,label\nfine,pos\n")
    assert fingerprint(cfg) != first
    assert fingerprint(DataConfig(format="hf", hf_dataset="imdb")) == "hf:imdb"


def test_load_corpus_folders_splits_train_and_applies_limits(tmp_path):
    for label in ("neg", "pos"):
        for i in range(10):
            write(tmp_path / "reviews" / label / f"{i:02d}.txt", f"{label} review {i}\n")
    cfg = DataConfig(format="folders", dir=tmp_path / "reviews", train=".", split={"validation": 0.2, "test": 0.2},
                     limit_train=5)
    corpus = load_corpus(cfg)
    assert [len(corpus[s]) for s in ("train", "validation", "test")] == [5, 4, 4]
    assert Counter(d.labels[0] for d in corpus["test"]) == {"neg": 2, "pos": 2}
    assert label_list(corpus, cfg) == sorted({d.labels[0] for d in corpus["train"]})
    assert label_list(corpus, cfg.model_copy(update={"labels": ["pos", "neg", "meh"]})) == ["pos", "neg", "meh"]


def test_load_corpus_reads_given_validation_and_test_files(tmp_path):
    write(tmp_path / "train.tsv", "text\tlabel\na\tx\nb\ty\n")
    write(tmp_path / "dev.tsv", "text\tlabel\nc\tx\n")
    write(tmp_path / "test.tsv", "text\tlabel\nd\ty\n")
    corpus = load_corpus(DataConfig(format="tsv", dir=tmp_path, train="train.tsv", validation="dev.tsv",
                                    test="test.tsv"))
    assert {s: [d.text for d in docs] for s, docs in corpus.items()} == {"train": ["a", "b"], "validation": ["c"],
                                                                         "test": ["d"]}


def test_split_files_round_trip(tmp_path):
    docs = [Document("Grüße, \"quoted\"\nnext line", ["a", "b"], "x.csv:2"), Document("", [], "x.csv:4")]
    write_split(docs, tmp_path / "train.jsonl")
    assert "Grüße" in (tmp_path / "train.jsonl").read_text(encoding="utf-8")
    assert read_split(tmp_path / "train.jsonl") == docs
