"""Read labelled NER corpora (CoNLL columns, JSON lines, Hugging Face datasets) into sentences that remember their
origin.

Readers keep the raw tags in the declared scheme; validation checks them and `canonicalize` converts to IOB2.
Every sentence carries `file:line`, so every later error can point at the place a user has to fix.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from nerflow.data import SPLITS, DataError, _lines, _read_text, decode_utf8, hash_files  # noqa: F401 - re-exported
from nerflow.ner.config import NerDataConfig as DataConfig
from nerflow.ner.schemes import repair_iob2, split_tag, to_iob2
from nerflow.redact import excerpt  # an error quotes at most this of a line: a key file is no corpus

_COLUMN_SEP = re.compile(r"[ \t]+")   # columns are separated by spaces/tabs; a no-break space may be part of a token

@dataclass(frozen=True)
class Sentence:
    tokens: list[str]
    tags: list[str]
    source: str          # "path:line" of the first token
    doc: int = 0         # document index inside its file (-DOCSTART- blocks); 0 when there are none


Corpus = dict[str, list[Sentence]]


def read_conll(path: Path, tag_column: int = -1) -> list[Sentence]:
    """Space- or tab-separated columns, token first, tag in `tag_column`; blank lines end sentences."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start, doc, n_columns = 0, 0, None

    def flush() -> None:
        if tokens:
            sentences.append(Sentence(list(tokens), list(tags), f"{path}:{start}", doc))
            tokens.clear()
            tags.clear()

    for lineno, line in enumerate(_lines(_read_text(path)), start=1):  # handles CRLF
        if not line.strip():
            flush()
            continue
        fields = _COLUMN_SEP.split(line.strip(" \t"))
        if fields[0] == "-DOCSTART-":
            flush()
            doc += 1 if sentences else 0
            continue
        if len(fields) < 2:
            raise DataError(f"{path}:{lineno}: expected a token and a tag, found 1 column: {excerpt(line)}")
        if n_columns is None:
            n_columns = len(fields)
        elif len(fields) != n_columns:
            raise DataError(f"{path}:{lineno}: expected {n_columns} columns like the lines above, found "
                            f"{len(fields)}: {excerpt(line)}")
        try:
            tag = fields[tag_column]
        except IndexError:
            raise DataError(f"{path}:{lineno}: data.tag_column={tag_column} but the line has {len(fields)} "
                            "columns") from None
        if not tokens:
            start = lineno
        tokens.append(fields[0])
        tags.append(tag)
    flush()
    if not sentences:
        raise DataError(f"{path}: no sentences found")
    return sentences


def read_jsonl(path: Path) -> list[Sentence]:
    """One JSON object per line: {"tokens": [...], "tags": [...]} (also accepts "ner_tags" for tags)."""
    sentences = []
    for lineno, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not valid JSON: {e.msg}") from None
        tags = row.get("tags", row.get("ner_tags")) if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("tokens"), list) or not isinstance(tags, list):
            raise DataError(f"{path}:{lineno}: expected an object with lists \"tokens\" and \"tags\"")
        try:
            doc = int(row.get("doc", 0))
        except (TypeError, ValueError):
            raise DataError(f"{path}:{lineno}: \"doc\" must be an integer document index, got {row['doc']!r}") from None
        sentences.append(Sentence([str(t) for t in row["tokens"]], [str(t) for t in tags], f"{path}:{lineno}", doc))
    if not sentences:
        raise DataError(f"{path}: no sentences found")
    return sentences


def read_hf(dataset_id: str, split: str, revision: str | None = None) -> list[Sentence]:
    """A hub dataset (at `revision`, a commit when planned) or a local dataset folder with `tokens` and `ner_tags`
    (ClassLabel ids or strings). A hub id needs the hub or the local Hugging Face cache."""
    import datasets  # heavy and only needed for this path

    try:
        ds = datasets.load_dataset(dataset_id, split=split, revision=revision)
    except (FileNotFoundError, ValueError) as e:   # no such dataset or split
        raise DataError(f"{dataset_id}[{split}]: cannot load it: {str(e).splitlines()[0]}") from None
    missing = [c for c in ("tokens", "ner_tags") if c not in ds.column_names]
    if missing:
        raise DataError(f"{dataset_id}[{split}]: no column {', '.join(map(repr, missing))} (it has "
                        f"{', '.join(ds.column_names)}); nerflow reads 'tokens' and 'ner_tags'")
    feature = ds.features["ner_tags"].feature
    names = getattr(feature, "names", None)
    return [Sentence(list(row["tokens"]), [names[t] if names else str(t) for t in row["ner_tags"]],
                     f"{dataset_id}[{split}]:{i + 1}") for i, row in enumerate(ds)]


def split_by_document(sentences: list[Sentence], validation: float, test: float, seed: int) -> Corpus:
    """Seeded split of whole documents (or sentences, when the file has no -DOCSTART-)."""
    docs: dict[int, list[Sentence]] = {}
    for s in sentences:
        docs.setdefault(s.doc, []).append(s)
    # without documents, shuffled sentences are no longer neighbours: each becomes its own document, so document
    # context (tokenize.context) never reads an unrelated sentence as context
    groups = list(docs.values()) if len(docs) > 1 else [[replace(s, doc=i)] for i, s in enumerate(sentences)]
    random.Random(seed).shuffle(groups)
    n_test, n_val = round(len(groups) * test), round(len(groups) * validation)
    if (test and not n_test) or (validation and not n_val) or n_test + n_val >= len(groups):
        raise DataError(f"{len(groups)} documents are too few to split off validation={validation} and "
                        f"test={test}; give data.validation and data.test files instead")
    flat = lambda gs: [s for g in gs for s in g]  # noqa: E731
    return {"test": flat(groups[:n_test]), "validation": flat(groups[n_test:n_test + n_val]),
            "train": flat(groups[n_test + n_val:])}


def input_files(cfg: DataConfig) -> dict[str, Path]:
    names = {"train": cfg.train, "validation": cfg.validation, "test": cfg.test}
    return {split: cfg.dir / name for split, name in names.items() if name}


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read the configured splits with their raw tags, splitting train when validation/test files are missing."""
    if cfg.format == "hf":
        if not cfg.hf_dataset:
            raise DataError("config key 'data.hf_dataset' is required when data.format is 'hf'")
        corpus = {split: read_hf(cfg.hf_dataset, split, cfg.hf_revision) for split in SPLITS}
    else:
        reader = read_jsonl if cfg.format == "jsonl" else lambda p: read_conll(p, cfg.tag_column)
        corpus = {split: reader(path) for split, path in input_files(cfg).items()}
        missing = [s for s in ("validation", "test") if s not in corpus]
        if missing:
            parts = split_by_document(corpus["train"], cfg.split.validation if "validation" in missing else 0.0,
                                      cfg.split.test if "test" in missing else 0.0, cfg.split.seed)
            corpus = {"train": parts["train"], **{s: corpus.get(s) or parts[s] for s in ("validation", "test")}}
    limits = {"train": cfg.limit_train, "validation": cfg.limit_validation, "test": cfg.limit_test}
    return {split: corpus[split][: limits[split]] if limits[split] else corpus[split] for split in SPLITS}


def canonicalize(sentences: list[Sentence], cfg: DataConfig) -> list[Sentence]:
    """Declared scheme -> IOB2, then repair I-X that opens an entity (validation decided whether that is allowed)."""
    return [Sentence(s.tokens, repair_iob2(to_iob2(s.tags, cfg.scheme)), s.source, s.doc) for s in sentences]


def label_list(corpus: Corpus) -> list[str]:
    """'O' first, then B-/I- of every type seen, sorted: derived from the data, never assumed."""
    types = sorted({split_tag(t)[1] for split in corpus.values() for s in split for t in s.tags if t != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def write_split(sentences: list[Sentence], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for s in sentences:
            f.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")


def read_split(path: Path) -> list[Sentence]:
    with path.open(encoding="utf-8") as f:
        return [Sentence(**json.loads(line)) for line in f]
