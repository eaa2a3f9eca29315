"""The synthetic quickstart corpus: deterministic, readable, IOB2-valid, and no test name leaks from train."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nerflow.config import load_config
from nerflow.ner.data import read_conll
from nerflow.ner.schemes import entity_spans, invalid_iob2_positions
from nerflow.ner.synthetic import FILES, generate_corpus

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"n_train": 120, "n_validation": 40, "n_test": 40}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """The default-size corpus (what the quickstart trains on), generated once for the module."""
    return generate_corpus(tmp_path_factory.mktemp("syn") / "quickstart", seed=0)


def entities(path: Path) -> dict[str, set[str]]:
    """type -> distinct lower-cased entity strings, re-derived from the written file."""
    out: dict[str, set[str]] = {}
    for s in read_conll(path):
        for etype, a, b in entity_spans(s.tags):
            out.setdefault(etype, set()).add(" ".join(s.tokens[a:b]).lower())
    return out


def file_bytes(paths: dict[str, Path]) -> dict[str, bytes]:
    folder = next(iter(paths.values())).parent
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_returns_the_three_splits(corpus):
    assert set(corpus) == {"train", "validation", "test"}
    assert {p.name for p in corpus.values()} == set(FILES.values())
    folder = corpus["train"].parent
    assert {p.name for p in folder.iterdir()} == {*FILES.values(), "README.txt", "manifest.json"}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = file_bytes(generate_corpus(tmp_path / "a", seed=7, **SMALL))
    b = file_bytes(generate_corpus(tmp_path / "b", seed=7, **SMALL))
    c = file_bytes(generate_corpus(tmp_path / "c", seed=8, **SMALL))
    assert a == b
    assert all(c[name] != a[name] for name in FILES.values())


def test_files_are_conll_with_valid_iob2_and_documents(corpus):
    for split, path in corpus.items():
        sentences = read_conll(path)
        assert len(sentences) == {"train": 600, "validation": 150, "test": 150}[split]
        assert all(len(s.tokens) == len(s.tags) and s.tokens for s in sentences)
        assert all(invalid_iob2_positions(s.tags) == [] for s in sentences), split
        assert all(t == "O" or t[:2] in ("B-", "I-") for s in sentences for t in s.tags)
        n_docs = path.read_text(encoding="utf-8").count("-DOCSTART- O\n")
        assert n_docs == len({s.doc for s in sentences}) >= len(sentences) // 12


def test_sentence_lengths_and_no_entity_sentences(corpus):
    sentences = read_conll(corpus["train"])
    lengths = [len(s.tokens) for s in sentences]
    assert all(8 <= n <= 25 or 40 <= n <= 60 for n in lengths)
    assert sum(n >= 40 for n in lengths) >= 10          # long ones, for windowing
    assert sum(all(t == "O" for t in s.tags) for s in sentences) >= 20
    assert sum(len(entity_spans(s.tags)) >= 2 for s in sentences) > len(sentences) / 2
    multi_token = [s for s in sentences for _, a, b in entity_spans(s.tags) if b - a > 1]
    assert len(multi_token) > 100


def test_entity_types_beyond_conll(corpus):
    types = set(entities(corpus["train"]))
    assert types == {"PER", "ORG", "LOC", "PRODUCT"}
    for split in ("validation", "test"):
        assert set(entities(corpus[split])) == types


def test_validation_and_test_names_never_occur_in_train(corpus):
    train = set().union(*entities(corpus["train"]).values())
    assert len(train) > 500
    for split in ("validation", "test"):
        held_out = set().union(*entities(corpus[split]).values())
        assert len(held_out) > 100
        assert held_out.isdisjoint(train), sorted(held_out & train)[:5]


def test_readme_says_synthetic_and_seed(corpus):
    text = (corpus["train"].parent / "README.txt").read_text(encoding="utf-8")
    assert "SYNTHETIC" in text and "seed=0" in text and "--seed 0" in text


def test_second_call_does_not_rewrite(tmp_path):
    paths = generate_corpus(tmp_path / "q", seed=3, **SMALL)
    folder = tmp_path / "q"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert generate_corpus(tmp_path / "q", seed=3, **SMALL) == paths
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_other_seed_size_or_damage_regenerates(tmp_path):
    folder = tmp_path / "q"
    generate_corpus(folder, seed=3, **SMALL)
    generate_corpus(folder, seed=4, **SMALL)
    assert json.loads((folder / "manifest.json").read_text())["seed"] == 4
    generate_corpus(folder, seed=4, **{**SMALL, "n_test": 30})
    assert len(read_conll(folder / "test.txt")) == 30
    (folder / "train.txt").write_text("broken O\n")      # a damaged file is noticed by its hash
    generate_corpus(folder, seed=4, **{**SMALL, "n_test": 30})
    assert len(read_conll(folder / "train.txt")) == 120
    (folder / "manifest.json").unlink()                 # an incomplete corpus is replaced
    generate_corpus(folder, seed=4, **SMALL)
    assert (folder / "manifest.json").is_file()


def test_refuses_to_replace_a_folder_with_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_corpus(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_command_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "nerflow.ner.synthetic", str(tmp_path / "cli"), "--seed", "5",
                          "--n-train", "30", "--n-validation", "10", "--n-test", "10"],
                         capture_output=True, text=True, check=True)
    assert "seed 5" in run.stdout
    assert len(read_conll(tmp_path / "cli" / "train.txt")) == 30


def test_quickstart_config_validates():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.experiment == "nerflow-quickstart"
    assert cfg.registry.model_name == "nerflow-quickstart"
    assert cfg.model.name_or_path == "all-MiniLM-L6-v2"
    assert (cfg.data.format, cfg.data.dir) == ("conll", Path("data/generated/quickstart").resolve())
    assert (cfg.data.train, cfg.data.validation, cfg.data.test) == tuple(FILES.values())
    assert cfg.train.lr == "auto"
