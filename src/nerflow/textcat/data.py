"""Read text-classification corpora (CSV/TSV, JSON lines, one folder per label, Hugging Face datasets) into
documents that remember their origin, and split them stratified by label.

Readers stop on input they cannot parse, but keep a document whose label is missing (labels=[]): validation then
reports every such document with its `file:line` instead of the reader stopping at the first one.
"""
from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from nerflow.data import SPLITS, DataError, _lines, _read_text, decode_utf8, read_bytes
from nerflow.data_identity import identity, identity_digest, role_paths
from nerflow.data_identity import label_folder_layout as _folder_layout  # the files the identity hashes
from nerflow.redact import excerpt  # an error quotes at most this of a line: a key file is no corpus
from nerflow.textcat.config import TextcatDataConfig as DataConfig


@dataclass(frozen=True)
class Document:
    text: str
    labels: list[str]   # one for single-label data (none: validation reports it), any number for multi-label
    source: str         # "path:line" of the row (csv/tsv/jsonl), the file (folders), "dataset[split]:i" (hf)


Corpus = dict[str, list[Document]]


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _labels(value: object, cfg: DataConfig, where: str) -> list[str]:
    """A label cell or field as a list; multi-label strings are split on data.label_separator; blank is none."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, (str, int, float)):
        text = str(value)
        items = text.split(cfg.label_separator) if cfg.multi_label else [text]
    else:
        raise DataError(f"{where}: the label must be a string or a list of strings, got {_json_type(value)}")
    if any(isinstance(v, (dict, list)) for v in items):
        raise DataError(f"{where}: a label list must hold strings, got {_json_type(value)} of nested values")
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _missing_columns(columns: list[str], cfg: DataConfig) -> str | None:
    """`no column 'x' (data.text_column)` for each configured column the data lacks, or None."""
    wanted = {cfg.text_column: "data.text_column", cfg.label_column: "data.label_column"}
    missing = [f"no column {name!r} ({key})" for name, key in wanted.items() if name not in columns]
    return ", ".join(missing) or None


def read_csv(path: Path, cfg: DataConfig, delimiter: str) -> list[Document]:
    """A header row naming the columns, then one document per row; quoted fields may hold delimiters and newlines."""
    # Long documents: the csv module's default limit of 128 KiB per field would reject them.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    kind, sep = ("TSV", "a tab") if delimiter == "\t" else ("CSV", repr(delimiter))
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
    docs: list[Document] = []
    header: list[str] | None = None
    last = 0   # the last physical line read: a row starts on the line after the previous row
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in row]
                missing = _missing_columns(header, cfg)
                if missing:
                    raise DataError(f"{path}:{start}: {missing}; the header has: "
                                    f"{excerpt(', '.join(header), 80, quote=False)}")
                text_at, label_at = header.index(cfg.text_column), header.index(cfg.label_column)
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{start}: {len(row)} field(s) but the header has {len(header)}; quote "
                                f"fields that contain {sep} or a line break")
            where = f"{path}:{start}"
            docs.append(Document(row[text_at], _labels(row[label_at], cfg, where), where))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: not valid {kind}: {e}") from None
    if not docs:
        raise DataError(f"{path}: no documents after the header")
    return docs


def read_jsonl(path: Path, cfg: DataConfig) -> list[Document]:
    """One object per line: the text in data.text_column, the label in data.label_column or a list in "labels"."""
    docs = []
    for lineno, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with {cfg.text_column!r} and {cfg.label_column!r}, "
                            f"got {_json_type(row)}")
        if cfg.text_column not in row:
            raise DataError(f"{where}: no field {cfg.text_column!r} (data.text_column); the object has: "
                            f"{excerpt(', '.join(row), 80, quote=False) or 'no fields'}")
        text = row[cfg.text_column]
        if not isinstance(text, str):
            raise DataError(f"{where}: field {cfg.text_column!r} must be a string, got {_json_type(text)}")
        label = row[cfg.label_column] if cfg.label_column in row else row.get("labels")
        docs.append(Document(text, _labels(label, cfg, where), where))
    if not docs:
        raise DataError(f"{path}: no documents found")
    return docs


def read_folders(root: Path, cfg: DataConfig) -> list[Document]:
    """One sub-folder per label (its name is the label), one UTF-8 text file per document; other files are ignored."""
    if cfg.multi_label:
        raise DataError(f"{root}: data.multi_label=true is not possible with data.format=folders (a document sits "
                        "in one label folder); use csv, tsv or jsonl for multi-label data")
    return [Document(decode_utf8(read_bytes(f), str(f)), [label], str(f))
            for label, files in _folder_layout(root).items() for f in files]


def read_hf(dataset_id_or_local_folder: str, split: str, cfg: DataConfig) -> list[Document]:
    """A hub dataset or a local dataset folder; labels may be ClassLabel ids, strings, or lists of either."""
    import datasets  # heavy and only needed for this path

    where = f"{dataset_id_or_local_folder}[{split}]"
    try:
        ds = datasets.load_dataset(dataset_id_or_local_folder, split=split, revision=cfg.hf_revision)
    except (FileNotFoundError, ValueError, ConnectionError) as e:   # no such dataset or split, or no hub
        raise DataError(f"{where}: cannot load it: {str(e).splitlines()[0]}") from None
    missing = _missing_columns(ds.column_names, cfg)
    if missing:
        raise DataError(f"{where}: {missing}; the dataset has: {', '.join(ds.column_names)}")
    feature = ds.features[cfg.label_column]
    names = getattr(getattr(feature, "feature", feature), "names", None)   # ClassLabel, or a list of ClassLabel

    def name(value: object) -> object:
        if names is None or not isinstance(value, int):
            return value
        return names[value] if value >= 0 else None   # -1: an unlabelled row (e.g. a hidden test split)

    docs = []
    for i, (text, value) in enumerate(zip(ds[cfg.text_column], ds[cfg.label_column]), start=1):
        value = [name(v) for v in value] if isinstance(value, list) else name(value)
        docs.append(Document("" if text is None else str(text), _labels(value, cfg, f"{where}:{i}"), f"{where}:{i}"))
    return docs


def _hf_split_names(dataset_id_or_local_folder: str, revision: str | None = None) -> list[str]:
    import datasets

    try:
        return datasets.get_dataset_split_names(dataset_id_or_local_folder, revision=revision)
    except (FileNotFoundError, ValueError, ConnectionError) as e:
        raise DataError(f"{dataset_id_or_local_folder}: cannot load it (data.hf_dataset): "
                        f"{str(e).splitlines()[0]}") from None


def _label_key(doc: Document) -> tuple[str, ...]:
    return tuple(sorted(set(doc.labels)))


def split_stratified(docs: list[Document], validation: float, test: float, seed: int) -> Corpus:
    """Seeded split that keeps every label's (multi-label: label set's) share in each split, with all copies of a
    text in one split, so a duplicate never leaks from train into validation or test."""
    by_text: dict[str, list[Document]] = {}
    for doc in docs:
        by_text.setdefault(doc.text, []).append(doc)
    groups = list(by_text.values())
    rng = random.Random(seed)
    rng.shuffle(groups)   # each stratum's groups are then in a seeded random order too
    strata: dict[tuple[str, ...], list[int]] = {}
    for i, group in enumerate(groups):
        strata.setdefault(_label_key(group[0]), []).append(i)
    parts: dict[str, list[list[Document]]] = {split: [] for split in SPLITS}
    for members in strata.values():
        n = len(members)
        n_test, n_val = round(n * test), round(n * validation)
        while n_test + n_val >= n and n_test + n_val:   # a class must keep a train example to be learnt
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        parts["test"] += [groups[i] for i in members[:n_test]]
        parts["validation"] += [groups[i] for i in members[n_test:n_test + n_val]]
        parts["train"] += [groups[i] for i in members[n_test + n_val:]]
    corpus: Corpus = {}
    for split, split_groups in parts.items():
        rng.shuffle(split_groups)   # classes interleaved: `limit_*` (the first N) keeps a mix of them
        corpus[split] = [doc for group in split_groups for doc in group]
    if (test and not corpus["test"]) or (validation and not corpus["validation"]) or not corpus["train"]:
        raise DataError(f"{len(docs)} documents ({len(groups)} distinct texts) are too few to split off "
                        f"data.split.validation={validation} and data.split.test={test} of every label; give "
                        "data.validation and data.test files instead")
    return corpus


def input_paths(cfg: DataConfig) -> dict[str, Path]:
    """split -> the configured file (or, for data.format=folders, the folder of label folders); {} for hf."""
    return role_paths(cfg)   # the paths the data identity describes


def fingerprint(cfg: DataConfig) -> str:
    """One hash of the configured files by role and content (nerflow.data_identity.identity): moving them changes
    nothing; an edited document, a renamed label folder (a changed label) or two swapped roles change it. A hub
    dataset is named here, not resolved (identity() resolves it to a commit)."""
    if cfg.format == "hf":
        return f"hf:{cfg.hf_dataset}"
    return identity_digest(identity(cfg))


def _read(path: Path, cfg: DataConfig) -> list[Document]:
    if cfg.format == "folders":
        return read_folders(path, cfg)
    if cfg.format == "jsonl":
        return read_jsonl(path, cfg)
    return read_csv(path, cfg, "\t" if cfg.format == "tsv" else ",")


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read the configured splits; a missing validation or test split is cut from train, stratified by label."""
    if cfg.format == "hf":
        if not cfg.hf_dataset:
            raise DataError("config key 'data.hf_dataset' is required when data.format is 'hf'")
        available = _hf_split_names(cfg.hf_dataset, cfg.hf_revision)
        if "train" not in available:
            raise DataError(f"{cfg.hf_dataset}: no 'train' split (data.hf_dataset has: {', '.join(available)})")
        corpus = {split: read_hf(cfg.hf_dataset, split, cfg) for split in SPLITS if split in available}
    else:
        corpus = {split: _read(path, cfg) for split, path in input_paths(cfg).items()}
    missing = [split for split in ("validation", "test") if split not in corpus]
    if missing:
        parts = split_stratified(corpus["train"], cfg.split.validation if "validation" in missing else 0.0,
                                 cfg.split.test if "test" in missing else 0.0, cfg.split.seed)
        given = {split: corpus[split] for split in ("validation", "test") if split in corpus}
        corpus = {**parts, **given}
    limits = {"train": cfg.limit_train, "validation": cfg.limit_validation, "test": cfg.limit_test}
    return {split: corpus[split][: limits[split]] if limits[split] else corpus[split] for split in SPLITS}


def label_list(corpus: Corpus, cfg: DataConfig) -> list[str]:
    """data.labels in its order when given (a fixed output layout), else the labels seen in train, sorted."""
    if cfg.labels:
        return list(cfg.labels)
    return sorted({label for doc in corpus.get("train", []) for label in doc.labels})


def write_split(docs: list[Document], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(asdict(doc), ensure_ascii=False) + "\n")


def read_split(path: Path) -> list[Document]:
    with path.open(encoding="utf-8") as f:
        return [Document(**json.loads(line)) for line in f if line.strip()]
