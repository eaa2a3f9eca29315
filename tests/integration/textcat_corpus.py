"""The tiny sentiment corpus the text-classification integration tests train on: one folder per label (the layout
of ../shared/data/movie_reviews), some texts longer than the model's window, and the config that runs it."""
from __future__ import annotations

import random
from pathlib import Path

from nerflow.config import load_config

POSITIVE = "great wonderful superb moving brilliant delightful".split()
NEGATIVE = "awful boring dull clumsy tedious dreadful".split()
FILLER = "the film was and its story plot actors scenes music felt quite very".split()


def review(rng: random.Random, label: str, words: int) -> str:
    text = [rng.choice(FILLER) for _ in range(words)]
    for i in rng.sample(range(words), max(1, words // 5)):
        text[i] = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
    return " ".join(text)


def write_reviews(root: Path, per_label: int = 30, seed: int = 0) -> Path:
    """`root/pos/*.txt`, `root/neg/*.txt` and a README beside them (not a label folder)."""
    rng = random.Random(seed)
    for label in ("pos", "neg"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):   # 6-40 words: with tokenize.max_length=16 the long ones need several windows
            (root / label / f"cv{i:03d}.txt").write_text(review(rng, label, rng.randint(6, 40)) + "\n")
    (root / "README").write_text("tiny reviews for the tests\n")
    return root


def textcat_config(tmp_path: Path, corpus: Path, model_dir: Path, cache_dir: Path, *extra: str):
    cfg_file = tmp_path / "textcat.yaml"
    cfg_file.write_text("task: text-classification\nexperiment: nerflow-textcat-test\n")
    return load_config(cfg_file, [
        "data.format=folders", f"data.dir={corpus}", "data.train=.", "data.split.validation=0.2",
        "data.split.test=0.2", f"model.name_or_path={model_dir}", f"cache_dir={cache_dir}",
        "registry.model_name=tiny-textcat", "tokenize.max_length=16", "tokenize.stride=4",
        "tokenize.long_documents=windows", "train.epochs=4", "train.lr=0.003", "train.freeze=none",
        "train.checkpoint_every=0", "train.log_every=5", "promote.min_support=5", *extra])
