"""Real Prefect (one temporary test server for the whole session) and a real MLflow on a temporary sqlite store."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import build_tiny_model
from .corpus import LONG, SHORT, UNSEEN, write_conll
from .textcat_corpus import textcat_config, write_reviews


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> Iterator[str]:
    """One sqlite store for the session; artifacts land next to it (see tracking.artifact_root). The environment
    variable is put back as it was afterwards, so nothing after these tests writes into a deleted store."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stage-cache")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    write_conll(d / "train.txt", ([LONG] + SHORT) * 4)
    write_conll(d / "valid.txt", [LONG] + SHORT[:3] + UNSEEN)
    write_conll(d / "test.txt", [LONG] + SHORT[2:] + UNSEEN[:2])
    return d


@pytest.fixture(scope="session")
def corpus_model_dir(tmp_path_factory) -> Path:
    """Random-init BERT whose tokenizer, trained here on the corpus, keeps every corpus word whole."""
    texts = [" ".join(w for w, _ in s) for s in [LONG, *SHORT, *UNSEEN]] * 10
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-corpus"), texts)


@pytest.fixture(scope="session")
def corpus_tokenizer(corpus_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(corpus_model_dir)


@pytest.fixture(scope="session")
def pipeline_result(tmp_path_factory, tiny_corpus, corpus_model_dir, mlflow_store, cache_dir):
    """The tiny corpus through the whole flow once: model `tiny-ner` version 1 @challenger. The NER template:
    tests copy its stage cache instead of training again."""
    from nerflow.flows.pipeline import pipeline

    from .corpus import tiny_config

    cfg = tiny_config(tmp_path_factory.mktemp("cfg"), tiny_corpus, corpus_model_dir, cache_dir)
    return cfg, pipeline(cfg)


@pytest.fixture(scope="session")
def textcat_reviews(tmp_path_factory) -> Path:
    return write_reviews(tmp_path_factory.mktemp("reviews"))


@pytest.fixture(scope="session")
def textcat_model_dir(tmp_path_factory, textcat_reviews) -> Path:
    texts = [p.read_text() for p in textcat_reviews.rglob("*.txt")]
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-textcat"), texts * 3)


@pytest.fixture(scope="session")
def textcat_run(tmp_path_factory, textcat_reviews, textcat_model_dir, mlflow_store):
    """The tiny reviews through the whole flow once: model `tiny-textcat` version 1 @champion. The text
    classification template: tests copy its stage cache instead of training again."""
    from nerflow.flows.pipeline import pipeline

    cfg = textcat_config(tmp_path_factory.mktemp("cfg"), textcat_reviews, textcat_model_dir,
                         tmp_path_factory.mktemp("textcat-cache"))
    return cfg, pipeline(cfg)
