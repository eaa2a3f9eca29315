"""The tiny NER corpus the integration tests overfit, and the config that runs it through the real flow."""
from __future__ import annotations

import shutil
from pathlib import Path

from nerflow.config import load_config

# A long sentence: with tokenize.max_length=16 (14 words + [CLS] + [SEP]) it needs two windows, and
# "Northwind Trading" straddles the first window's edge (asserted below, not assumed).
LONG = [("Yesterday", "O"), ("in", "O"), ("the", "O"), ("morning", "O"), ("Maria", "B-PER"), ("Lopez", "I-PER"),
        ("said", "O"), ("that", "O"), ("the", "O"), ("board", "O"), ("of", "O"), ("the", "O"), ("company", "O"),
        ("Northwind", "B-ORG"),
        ("Trading", "I-ORG"), ("would", "O"), ("meet", "O"), ("in", "O"), ("New", "B-LOC"), ("Salem", "I-LOC"),
        ("on", "O"), ("Monday", "O"), (".", "O")]
SHORT = [
    [("John", "B-PER"), ("Smith", "I-PER"), ("visited", "O"), ("Berlin", "B-LOC"), (".", "O")],
    [("Acme", "B-ORG"), ("Corp", "I-ORG"), ("hired", "O"), ("Anna", "B-PER"), ("Schmidt", "I-PER"), (".", "O")],
    [("The", "O"), ("Vortex", "B-PRODUCT"), ("3000", "I-PRODUCT"), ("was", "O"), ("launched", "O"), ("by", "O"),
     ("Globex", "B-ORG"), ("in", "O"), ("Springfield", "B-LOC"), (".", "O")],
    [("Nobody", "O"), ("said", "O"), ("anything", "O"), (".", "O")],
    [("Anna", "B-PER"), ("Schmidt", "I-PER"), ("works", "O"), ("for", "O"), ("Initech", "B-ORG"), ("in", "O"),
     ("Paris", "B-LOC"), (".", "O")],
]
# Validation: seen sentences plus recombinations and new names (one labelled against its context), so its F1 is
# a real number to reproduce, not a given 1.0.
UNSEEN = [[("Maria", "B-PER"), ("Lopez", "I-PER"), ("visited", "O"), ("Paris", "B-LOC"), (".", "O")],
          [("Pedro", "B-PER"), ("Alvarez", "I-PER"), ("visited", "O"), ("Madrid", "B-ORG"), (".", "O")],
          [("Globex", "B-ORG"), ("hired", "O"), ("John", "B-PER"), ("Smith", "I-PER"), (".", "O")],
          [("Initech", "B-ORG"), ("launched", "O"), ("the", "O"), ("Vortex", "B-PRODUCT"), ("3000", "I-PRODUCT"),
           ("in", "O"), ("Berlin", "B-LOC"), (".", "O")]]


def write_conll(path: Path, sentences) -> Path:
    path.write_text("-DOCSTART- O\n\n" + "".join("".join(f"{w} {t}\n" for w, t in s) + "\n" for s in sentences))
    return path


def copy_cache(cache_dir: Path, to: Path) -> Path:
    """A copy of a run's stage cache, its generations' symlinks kept as links, without its `locks` folder: those
    files belong to the processes that ran the template (and one may be taking them while this copies), not to any
    stage's result, so the copy starts with none, as a new cache does."""
    shutil.copytree(cache_dir, to, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return to


def tiny_config(tmp_path: Path, corpus: Path, model_dir: Path, cache_dir: Path, *extra: str):
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text("experiment: nerflow-test\n")
    return load_config(cfg_file, [
        f"data.dir={corpus}", "data.train=train.txt", "data.validation=valid.txt", "data.test=test.txt",
        f"model.name_or_path={model_dir}", f"cache_dir={cache_dir}", "registry.model_name=tiny-ner",
        "tokenize.max_length=16", "tokenize.stride=4", "train.epochs=25", "train.lr=0.003", "train.batch_size=4",
        # a random-init model overfits a tiny corpus only with its embeddings trained (frozen random embeddings
        # leave the outcome to chance: the WordPiece vocabulary trained per session is not deterministic)
        "train.freeze=none",
        "train.early_stopping_patience=0", "train.checkpoint_every=0", "train.log_every=5", *extra])
