"""Readers, splitting, canonicalization and labels on tiny files written to tmp_path.

Every error a user can cause by the data must be a DataError that points at `file:line`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from nerflow.config import SplitConfig
from nerflow.ner.config import NerDataConfig as DataConfig
from nerflow.ner.data import (
    DataError,
    Sentence,
    canonicalize,
    hash_files,
    input_files,
    label_list,
    load_corpus,
    read_conll,
    read_jsonl,
    read_split,
    split_by_document,
    write_split,
)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))   # no newline translation: what is written is what is read
    return path


def at(path: Path, line: int | None = None) -> str:
    """Regex for the `file:line` an error message starts with."""
    return "^" + re.escape(f"{path}:{line}:" if line is not None else f"{path}:")


def conll(*sentences: list[tuple[str, ...]], docstart: bool = False) -> str:
    """One '-DOCSTART-' block per call when docstart, else plain sentences separated by blank lines."""
    blocks = ["\n".join(" ".join(cols) for cols in s) for s in sentences]
    text = "\n\n".join(blocks) + "\n"
    return ("-DOCSTART- O\n\n" + text) if docstart else text


# --- read_conll ---------------------------------------------------------------------------------------------

SIMPLE = "John B-PER\nSmith I-PER\nsleeps O\n\nParis B-LOC\n"


@pytest.mark.parametrize("text", [
    SIMPLE,
    SIMPLE.replace(" ", "\t"),                                   # tab-separated
    SIMPLE.replace(" ", " \t  "),                                # runs of mixed spaces and tabs
    SIMPLE.replace("\n", "\r\n"),                                # CRLF
    SIMPLE.replace("\n", "\r"),                                  # old Mac line ends
    "\ufeff" + SIMPLE,                                           # UTF-8 BOM
    "\ufeff" + SIMPLE.replace("\n", "\r\n"),                     # BOM + CRLF (Windows editors)
    SIMPLE.rstrip("\n"),                                         # no newline at the end of the file
    "  John B-PER  \nSmith I-PER\t\nsleeps O\n\nParis B-LOC\n",  # leading/trailing blanks on a line
])
def test_read_conll_layouts(tmp_path, text):
    path = write(tmp_path / "train.txt", text)
    sents = read_conll(path)
    assert [s.tokens for s in sents] == [["John", "Smith", "sleeps"], ["Paris"]]
    assert [s.tags for s in sents] == [["B-PER", "I-PER", "O"], ["B-LOC"]]
    assert [s.source for s in sents] == [f"{path}:1", f"{path}:5"]
    assert [s.doc for s in sents] == [0, 0]


@pytest.mark.parametrize("columns", [2, 3, 4, 6])
def test_read_conll_tag_is_the_last_column(tmp_path, columns):
    def line(tok, tag):
        return " ".join([tok, *[f"c{i}" for i in range(columns - 2)], tag])
    path = write(tmp_path / "t.txt", f"{line('EU', 'B-ORG')}\n{line('rejects', 'O')}\n")
    [s] = read_conll(path)
    assert s.tokens == ["EU", "rejects"] and s.tags == ["B-ORG", "O"]


def test_read_conll_conll2003_columns(tmp_path):
    path = write(tmp_path / "t.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
                                     "German JJ B-NP B-MISC\n")
    [s] = read_conll(path)
    assert s.tokens == ["EU", "rejects", "German"] and s.tags == ["B-ORG", "O", "B-MISC"]
    assert s.source == f"{path}:3"


@pytest.mark.parametrize("tag_column, expected", [
    (1, ["B-ORG", "O"]),
    (-2, ["B-ORG", "O"]),
    (2, ["NNP", "VBZ"]),
    (-1, ["NNP", "VBZ"]),
])
def test_read_conll_configured_tag_column(tmp_path, tag_column, expected):
    path = write(tmp_path / "t.txt", "EU B-ORG NNP\nrejects O VBZ\n")
    [s] = read_conll(path, tag_column=tag_column)
    assert s.tokens == ["EU", "rejects"] and s.tags == expected


def test_read_conll_tag_column_out_of_range(tmp_path):
    path = write(tmp_path / "t.txt", "EU B-ORG\nrejects O\n")
    with pytest.raises(DataError, match=at(path, 1) + r" data\.tag_column=5 but the line has 2 columns"):
        read_conll(path, tag_column=5)


def test_read_conll_documents(tmp_path):
    path = write(tmp_path / "t.txt",
                 "-DOCSTART- -X- O\n\n"                  # 1-2
                 "A B-PER\nb O\n\n"                      # 3-5   doc 0
                 "C B-LOC\n\n"                           # 6-7   doc 0
                 "-DOCSTART- -X- O\n\n"                  # 8-9
                 "D B-ORG\n\n"                           # 10-11 doc 1
                 "-DOCSTART- -X- O\n"                    # 12 (no blank line after it)
                 "E O\nf O\n")                           # 13-14 doc 2
    sents = read_conll(path)
    assert [s.tokens for s in sents] == [["A", "b"], ["C"], ["D"], ["E", "f"]]
    assert [s.doc for s in sents] == [0, 0, 1, 2]
    assert [s.source for s in sents] == [f"{path}:3", f"{path}:6", f"{path}:10", f"{path}:13"]
    assert not any("-DOCSTART-" in s.tokens for s in sents)


def test_read_conll_docstart_without_blank_line_ends_the_sentence(tmp_path):
    path = write(tmp_path / "t.txt", "A O\n-DOCSTART- O\nB O\n")
    sents = read_conll(path)
    assert [s.tokens for s in sents] == [["A"], ["B"]]
    assert sents[0].doc < sents[1].doc


def test_read_conll_without_docstart_is_one_document(tmp_path):
    path = write(tmp_path / "t.txt", conll([("a", "O")], [("b", "O")], [("c", "O")]))
    assert {s.doc for s in read_conll(path)} == {0}


@pytest.mark.parametrize("separator", ["\n", "\n\n\n", "\n   \n", "\n\t\n", "\n \t \n\n", "\r\n \r\n"])
def test_read_conll_blank_and_whitespace_only_lines_separate_sentences(tmp_path, separator):
    path = write(tmp_path / "t.txt", "a O\nb O\n" + separator + "c B-PER\n" + separator)
    sents = read_conll(path)
    assert [s.tokens for s in sents] == [["a", "b"], ["c"]]        # no empty sentences
    expected_line = 2 + separator.count("\n") + 1                 # the line 'c B-PER' is on
    assert sents[1].source == f"{path}:{expected_line}"


def test_read_conll_leading_blank_lines(tmp_path):
    path = write(tmp_path / "t.txt", "\n\n  \nx B-PER\n")
    [s] = read_conll(path)
    assert s.source == f"{path}:4"


def test_read_conll_unicode_tokens_and_odd_whitespace_inside_tokens(tmp_path):
    # U+2028 / U+0085 are line breaks to str.splitlines() and a no-break space is whitespace to str.split(),
    # but none of them separates lines or columns in a CoNLL file
    path = write(tmp_path / "t.txt", "Zürich B-LOC\n10\u00a0000 O\na\u2028b O\nc\x85d O\n\nÉcole B-ORG\n")
    sents = read_conll(path)
    assert sents[0].tokens == ["Zürich", "10\u00a0000", "a\u2028b", "c\x85d"]
    assert sents[1].tokens == ["École"] and sents[1].source == f"{path}:6"


def test_read_conll_types_with_hyphens(tmp_path):
    path = write(tmp_path / "t.txt", "Hamlet B-WORK-OF-ART\nby O\n")
    assert read_conll(path)[0].tags == ["B-WORK-OF-ART", "O"]


# --- read_jsonl ---------------------------------------------------------------------------------------------

def test_read_jsonl(tmp_path):
    path = write(tmp_path / "t.jsonl",
                 '{"tokens": ["John", "sleeps"], "tags": ["B-PER", "O"]}\n'
                 "\n"
                 '{"tokens": ["Paris"], "ner_tags": ["B-LOC"], "doc": 3}\n'
                 '  {"tokens": ["a\u2028b"], "tags": ["O"]}  \r\n')          # raw U+2028 is valid inside JSON
    sents = read_jsonl(path)
    assert [s.tokens for s in sents] == [["John", "sleeps"], ["Paris"], ["a\u2028b"]]
    assert [s.tags for s in sents] == [["B-PER", "O"], ["B-LOC"], ["O"]]
    assert [s.source for s in sents] == [f"{path}:1", f"{path}:3", f"{path}:4"]
    assert [s.doc for s in sents] == [0, 3, 0]


def test_read_jsonl_tags_win_over_ner_tags_and_values_become_strings(tmp_path):
    path = write(tmp_path / "t.jsonl", '{"tokens": ["x", 1], "tags": ["O", "O"], "ner_tags": [0, 0]}\n')
    [s] = read_jsonl(path)
    assert s.tokens == ["x", "1"] and s.tags == ["O", "O"]


def test_read_jsonl_with_bom(tmp_path):
    path = write(tmp_path / "t.jsonl", '\ufeff{"tokens": ["a"], "tags": ["O"]}\n')
    assert read_jsonl(path)[0].tokens == ["a"]


# --- bad input: DataError naming file and line --------------------------------------------------------------

@pytest.mark.parametrize("reader", [read_conll, read_jsonl])
def test_missing_file(tmp_path, reader):
    path = tmp_path / "nope.txt"
    with pytest.raises(DataError, match=at(path) + " file not found"):
        reader(path)


@pytest.mark.parametrize("reader", [read_conll, read_jsonl])
@pytest.mark.parametrize("text", ["", "\n", "   \n\t\n\n", "\r\n\r\n", "\ufeff", "\ufeff\n  \n"])
def test_empty_or_whitespace_only_file(tmp_path, reader, text):
    path = write(tmp_path / "empty.txt", text)
    with pytest.raises(DataError, match=at(path) + " file is empty"):
        reader(path)


@pytest.mark.parametrize("data, line", [
    (b"\xff O\nb O\n", 1),
    (b"a O\nb O\n\nZ\xfcrich B-LOC\n", 4),            # Latin-1 u-umlaut on line 4
    (b"a O\r\nb O\r\n\r\nZ\xfcrich B-LOC\r\n", 4),    # same with CRLF
    (b"\xc3\xa9 O\nb O\n\xe9 O\n", 3),                # valid UTF-8 before the bad byte
])
@pytest.mark.parametrize("reader", [read_conll, read_jsonl])
def test_not_utf8_names_the_line_of_the_bad_byte(tmp_path, reader, data, line):
    path = write(tmp_path / "latin1.txt", data)
    with pytest.raises(DataError, match=at(path, line) + " not UTF-8"):
        reader(path)


@pytest.mark.parametrize("text, line, found", [
    ("a B-PER\nb I-PER\nc x O\n", 3, 3),                      # 3 columns after 2
    ("a p B-PER\nb p O\n\nc O\n", 4, 2),                      # in a later sentence
    ("-DOCSTART- -X- -X- O\n\na B-PER\nb x y O\n", 4, 4),     # -DOCSTART- does not set the column count
])
def test_read_conll_wrong_column_count(tmp_path, text, line, found):
    path = write(tmp_path / "train.txt", text)
    with pytest.raises(DataError, match=at(path, line) + rf" expected \d columns like the lines above, found {found}"):
        read_conll(path)


@pytest.mark.parametrize("text, line", [
    ("John\nSmith I-PER\n", 1),
    ("John B-PER\nSmith\n", 2),
    ("John B-PER\r\n\r\nSmith \t \r\n", 3),
])
def test_read_conll_one_column(tmp_path, text, line):
    path = write(tmp_path / "train.txt", text)
    with pytest.raises(DataError, match=at(path, line) + " expected a token and a tag, found 1 column"):
        read_conll(path)


def test_read_conll_only_docstart_has_no_sentences(tmp_path):
    path = write(tmp_path / "train.txt", "-DOCSTART- -X- O\n\n")
    with pytest.raises(DataError, match=at(path) + " no sentences found"):
        read_conll(path)


@pytest.mark.parametrize("text, line", [
    ('{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["b"], "tags": ["O"]\n', 2),
    ('{"tokens": ["a"], "tags": ["O"]}\n\n\nnot json\n', 4),
    ("{'tokens': ['a'], 'tags': ['O']}\n", 1),
    ('{"tokens": ["a"], "tags": ["O"]}\r\n\r\n{"tokens": ["a"],\r\n "tags": ["O"]}\r\n', 3),   # one object per line
])
def test_read_jsonl_invalid_json(tmp_path, text, line):
    path = write(tmp_path / "train.jsonl", text)
    with pytest.raises(DataError, match=at(path, line) + " not valid JSON"):
        read_jsonl(path)


@pytest.mark.parametrize("obj", [
    '{"tokens": ["a"]}',                            # no tags
    '{"tags": ["O"]}',                              # no tokens
    '{"tokens": "a", "tags": ["O"]}',               # not a list
    '{"tokens": ["a"], "tags": null}',
    '[["a"], ["O"]]',                               # not an object
    '"a O"',
])
def test_read_jsonl_object_without_tokens_and_tags(tmp_path, obj):
    path = write(tmp_path / "train.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n' + obj + "\n")
    with pytest.raises(DataError, match=at(path, 2) + ' expected an object with lists "tokens" and "tags"'):
        read_jsonl(path)


def test_read_jsonl_bad_doc_index(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"tokens": ["a"], "tags": ["O"], "doc": "intro"}\n')
    with pytest.raises(DataError, match=at(path, 1) + ' "doc" must be an integer'):
        read_jsonl(path)


# --- split_by_document --------------------------------------------------------------------------------------

def make_docs(n_docs: int, per_doc: int = 3) -> list[Sentence]:
    return [Sentence([f"w{d}_{i}"], ["O"], f"f.txt:{d * 10 + i}", d) for d in range(n_docs) for i in range(per_doc)]


def ids(sentences: list[Sentence]) -> list[str]:
    return [s.source for s in sentences]


def test_split_by_document_keeps_documents_whole():
    sents = make_docs(10)
    parts = split_by_document(sents, validation=0.2, test=0.2, seed=1)
    assert sorted(ids(parts["train"] + parts["validation"] + parts["test"])) == sorted(ids(sents))  # all, once
    docs = {split: {s.doc for s in part} for split, part in parts.items()}
    assert (len(docs["train"]), len(docs["validation"]), len(docs["test"])) == (6, 2, 2)
    assert not (docs["train"] & docs["validation"] or docs["train"] & docs["test"] or docs["validation"] & docs["test"])
    for part in parts.values():                             # every document with all 3 of its sentences
        assert all(sum(s.doc == d for s in part) == 3 for d in {s.doc for s in part})


def test_split_by_document_is_seeded():
    sents = make_docs(20)
    a = split_by_document(sents, 0.2, 0.2, seed=5)
    b = split_by_document(list(sents), 0.2, 0.2, seed=5)
    c = split_by_document(sents, 0.2, 0.2, seed=6)
    assert {k: ids(v) for k, v in a.items()} == {k: ids(v) for k, v in b.items()}
    assert {k: ids(v) for k, v in a.items()} != {k: ids(v) for k, v in c.items()}


def test_split_by_document_falls_back_to_sentences_without_documents():
    sents = [Sentence([f"w{i}"], ["O"], f"f.txt:{i}") for i in range(10)]   # all doc 0
    parts = split_by_document(sents, validation=0.1, test=0.3, seed=0)
    assert (len(parts["train"]), len(parts["validation"]), len(parts["test"])) == (6, 1, 3)
    assert sorted(ids(parts["train"] + parts["validation"] + parts["test"])) == sorted(ids(sents))
    assert len({s.doc for s in parts["train"]}) == 6           # shuffled apart: no sentence is another's context


def test_split_by_document_zero_fraction_gives_an_empty_split():
    parts = split_by_document(make_docs(5), validation=0.0, test=0.2, seed=0)
    assert parts["validation"] == [] and len({s.doc for s in parts["test"]}) == 1


@pytest.mark.parametrize("n_docs, validation, test", [
    (3, 0.1, 0.1),        # 0.3 documents each round to 0
    (2, 0.5, 0.5),        # nothing left for train
    (4, 0.1, 0.0),
])
def test_split_by_document_too_few_documents(n_docs, validation, test):
    with pytest.raises(DataError, match=f"{n_docs} documents are too few"):
        split_by_document(make_docs(n_docs), validation, test, seed=0)


def test_split_by_document_too_few_sentences_without_documents():
    sents = [Sentence(["a"], ["O"], "f.txt:1"), Sentence(["b"], ["O"], "f.txt:3")]
    with pytest.raises(DataError, match="too few.*give data.validation and data.test files"):
        split_by_document(sents, 0.1, 0.1, seed=0)


# --- load_corpus --------------------------------------------------------------------------------------------

def write_docs(path: Path, n_docs: int, per_doc: int = 2) -> Path:
    parts = []
    for d in range(n_docs):
        parts.append("-DOCSTART- O\n")
        parts.extend(f"\nd{d}s{i} B-PER\nx O\n" for i in range(per_doc))
        parts.append("\n")
    return write(path, "".join(parts))


def test_load_corpus_with_all_files(tmp_path):
    write(tmp_path / "train.txt", conll([("a", "B-PER")], [("b", "O")], [("c", "O")]))
    write(tmp_path / "dev.txt", conll([("d", "B-LOC")]))
    write(tmp_path / "test.txt", conll([("e", "O")], [("f", "O")]))
    cfg = DataConfig(dir=tmp_path, train="train.txt", validation="dev.txt", test="test.txt")
    corpus = load_corpus(cfg)
    assert list(corpus) == ["train", "validation", "test"]
    assert [s.tokens for s in corpus["train"]] == [["a"], ["b"], ["c"]]
    assert [s.tokens for s in corpus["validation"]] == [["d"]]
    assert [s.tokens for s in corpus["test"]] == [["e"], ["f"]]
    assert corpus["validation"][0].source == f"{tmp_path / 'dev.txt'}:1"
    assert input_files(cfg) == {s: tmp_path / n for s, n in
                                [("train", "train.txt"), ("validation", "dev.txt"), ("test", "test.txt")]}


def test_load_corpus_splits_train_when_only_train_is_given(tmp_path):
    write_docs(tmp_path / "train.txt", n_docs=10)
    cfg = DataConfig(dir=tmp_path, split=SplitConfig(validation=0.2, test=0.1, seed=3))
    corpus = load_corpus(cfg)
    docs = {split: {s.doc for s in part} for split, part in corpus.items()}
    assert (len(docs["train"]), len(docs["validation"]), len(docs["test"])) == (7, 2, 1)
    assert sum(len(p) for p in corpus.values()) == 20
    assert load_corpus(cfg) == corpus                                   # seeded: the same split every time


def test_load_corpus_splits_off_only_the_missing_split(tmp_path):
    write_docs(tmp_path / "train.txt", n_docs=10)
    write(tmp_path / "dev.txt", conll([("dev", "O")]))
    corpus = load_corpus(DataConfig(dir=tmp_path, validation="dev.txt", split=SplitConfig(test=0.2)))
    assert [s.tokens for s in corpus["validation"]] == [["dev"]]          # the file, not a split of train
    assert len({s.doc for s in corpus["test"]}) == 2
    assert len(corpus["train"]) + len(corpus["test"]) == 20


def test_load_corpus_limits(tmp_path):
    write(tmp_path / "train.txt", conll(*[[(f"t{i}", "O")] for i in range(5)]))
    write(tmp_path / "dev.txt", conll(*[[(f"d{i}", "O")] for i in range(3)]))
    write(tmp_path / "test.txt", conll(*[[(f"e{i}", "O")] for i in range(3)]))
    corpus = load_corpus(DataConfig(dir=tmp_path, validation="dev.txt", test="test.txt",
                                    limit_train=2, limit_validation=1, limit_test=10))
    assert [s.tokens for s in corpus["train"]] == [["t0"], ["t1"]]        # the first N, in file order
    assert [s.tokens for s in corpus["validation"]] == [["d0"]]
    assert len(corpus["test"]) == 3                                      # a limit above the size keeps all


def test_load_corpus_jsonl_and_tag_column(tmp_path):
    write(tmp_path / "tr.jsonl", '{"tokens": ["a"], "tags": ["B-X"]}\n')
    write(tmp_path / "va.jsonl", '{"tokens": ["b"], "tags": ["O"]}\n')
    write(tmp_path / "te.jsonl", '{"tokens": ["c"], "tags": ["O"]}\n')
    corpus = load_corpus(DataConfig(format="jsonl", dir=tmp_path, train="tr.jsonl", validation="va.jsonl",
                                    test="te.jsonl"))
    assert corpus["train"][0].tags == ["B-X"]
    for name in ("tr.txt", "va.txt", "te.txt"):
        write(tmp_path / name, "a B-PER NNP\n")
    corpus = load_corpus(DataConfig(dir=tmp_path, train="tr.txt", validation="va.txt", test="te.txt",
                                    tag_column=1))
    assert corpus["test"][0].tags == ["B-PER"]


def test_load_corpus_errors_point_at_the_file(tmp_path):
    write(tmp_path / "train.txt", "a O\n")
    with pytest.raises(DataError, match=at(tmp_path / "dev.txt") + " file not found"):
        load_corpus(DataConfig(dir=tmp_path, validation="dev.txt", test="train.txt"))
    with pytest.raises(DataError, match="data.hf_dataset"):
        load_corpus(DataConfig(format="hf"))


# --- canonicalize and label_list ----------------------------------------------------------------------------

@pytest.mark.parametrize("scheme, raw, iob2", [
    ("iob1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
    ("bioes", ["S-PER", "B-ORG", "I-ORG", "E-ORG", "O"], ["B-PER", "B-ORG", "I-ORG", "I-ORG", "O"]),
    ("bioes", ["O", "E-PER"], ["O", "B-PER"]),
    ("iob2", ["O", "I-PER", "I-PER", "B-LOC", "I-ORG"], ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"]),  # repaired
    ("iob2", ["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),
])
def test_canonicalize(scheme, raw, iob2):
    s = Sentence(list("abcde")[: len(raw)], raw, "f.txt:7", 2)
    [out] = canonicalize([s], DataConfig(scheme=scheme))
    assert out == Sentence(s.tokens, iob2, "f.txt:7", 2)
    assert s.tags == raw                                                # the input is not modified


def test_label_list_is_derived_from_the_data():
    corpus = {
        "train": [Sentence(["a", "b", "c"], ["B-PRODUCT", "I-PRODUCT", "O"], "f:1")],
        "validation": [Sentence(["d", "e"], ["B-WORK-OF-ART", "I-WORK-OF-ART"], "f:2")],
        "test": [Sentence(["f"], ["B-PER"], "f:3"), Sentence(["g"], ["O"], "f:4")],
    }
    assert label_list(corpus) == ["O", "B-PER", "I-PER", "B-PRODUCT", "I-PRODUCT",
                                  "B-WORK-OF-ART", "I-WORK-OF-ART"]


def test_label_list_without_entities_and_with_only_i_tags():
    assert label_list({"train": [Sentence(["a"], ["O"], "f:1")]}) == ["O"]
    assert label_list({"train": [Sentence(["a"], ["I-EVENT"], "f:1")]}) == ["O", "B-EVENT", "I-EVENT"]


def test_write_and_read_split_round_trip(tmp_path):
    sents = [Sentence(["Zürich", "a\u2028b"], ["B-LOC", "O"], "x.txt:3", 1), Sentence(["c"], ["O"], "x.txt:6")]
    write_split(sents, tmp_path / "s.jsonl")
    assert read_split(tmp_path / "s.jsonl") == sents


# --- hash_files ---------------------------------------------------------------------------------------------

def test_hash_files_tracks_content_not_name_or_mtime(tmp_path):
    a = write(tmp_path / "a.txt", "John B-PER\n")
    b = write(tmp_path / "b.txt", "Paris B-LOC\n")
    base = hash_files([a, b])
    assert hash_files([a, b]) == base and len(base) == 64

    os.utime(a, (1_000_000, 1_000_000))                     # touched
    assert hash_files([a, b]) == base
    renamed = a.rename(tmp_path / "renamed.txt")            # renamed
    assert hash_files([renamed, b]) == base

    write(renamed, "John B-PES\n")                          # one byte changed
    assert hash_files([renamed, b]) != base
    write(renamed, "John B-PER\n")
    assert hash_files([renamed, b]) == base


def test_hash_files_distinguishes_where_one_file_ends(tmp_path):
    ab, empty = write(tmp_path / "ab.txt", "ab"), write(tmp_path / "e.txt", "")
    a, b = write(tmp_path / "a.txt", "a"), write(tmp_path / "b.txt", "b")
    assert hash_files([ab, empty]) != hash_files([a, b])
