"""The promotion gate scores a registered NER version on exactly the inputs evaluation scores (the served-scorer
protocol, nerflow.scoring), with nerflow's own code; a version registered before model hashes is refused unless
trusted. Both use the session's `tiny-ner` version 1 weights (no training here)."""
from __future__ import annotations

import json

import pytest

from nerflow.model_files import UnverifiedModel
from nerflow.ner.data import Sentence, read_split, write_split
from nerflow.ner.evaluate import read_predictions_conll
from nerflow.prefect_tasks import gate_scoring

from .corpus import LONG, SHORT
from .served import register_without_hash, stage_output

MODEL, TASK = "tiny-ner", "token-classification"
# tokens that hold a space, as a JSON-lines corpus may have them: each is ONE token, with one gold tag
SPACED = [
    Sentence(["Yesterday", "Maria Lopez", "said", "that", "Acme Corp", "would", "meet", "in", "New Salem", "."],
             ["O", "B-PER", "O", "O", "B-ORG", "O", "O", "O", "B-LOC", "O"], "spaced.jsonl:1", 0),
    # the model tags Berlin as a location: read as two words, the entity would start inside this one token
    Sentence(["Nobody", "visited Berlin", "."], ["O", "O", "O"], "spaced.jsonl:2", 0),
    Sentence([w for w, _ in SHORT[0]], [t for _, t in SHORT[0]], "spaced.jsonl:3", 1),
    Sentence([w for w, _ in LONG], [t for _, t in LONG], "spaced.jsonl:4", 1),
]


def evaluation_tags(cfg, run_id: str, sentences: list[Sentence]) -> list[list[str]]:
    """What the evaluate stage predicts for these sentences: the tokenize stage's windows of the token lists,
    predict_windows and its decoding, on the trained weights."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerflow.ner.predict import predict_windows
    from nerflow.ner.tokenization import encode_split, encoder_for

    model_dir = stage_output(cfg, run_id, "train") / "model"
    labels = json.loads((stage_output(cfg, run_id, "validate") / "labels.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    windows = encode_split(encoder_for(tokenizer, cfg.tokenize), sentences, labels)
    tags, _ = predict_windows(AutoModelForTokenClassification.from_pretrained(model_dir), windows,
                              [len(s.tokens) for s in sentences], dict(enumerate(labels)),
                              tokenizer.pad_token_id or 0)
    return tags


@pytest.fixture(scope="module")
def split(pipeline_result, tmp_path_factory):
    """The sentences above followed by the run's own test split."""
    cfg, result = pipeline_result
    tmp = tmp_path_factory.mktemp("served-scorer")
    write_split(SPACED + read_split(stage_output(cfg, result.run_id, "validate") / "test.jsonl"), tmp / "test.jsonl")
    return tmp / "test.jsonl"


@pytest.fixture(scope="module")
def scored(pipeline_result, split):
    _, result = pipeline_result
    version = str(result["register"].version)
    return gate_scoring.score_versions(MODEL, [version], split, TASK)[version]


def test_the_gate_scores_a_token_holding_a_space_as_one_token_like_evaluation(pipeline_result, scored):
    cfg, result = pipeline_result
    assert "B-LOC" in scored["labels"] and scored["multi_label"] is False
    assert [len(tags) for tags in scored["pred"][:len(SPACED)]] == [len(s.tokens) for s in SPACED]
    assert scored["pred"][:len(SPACED)] == evaluation_tags(cfg, result.run_id, SPACED)


def test_a_version_registered_before_model_hashes_is_scored_only_with_trust(pipeline_result, split, scored):
    """Trusted, it is scored like any version (by nerflow's installed code): the evaluate stage's own test
    predictions."""
    cfg, result = pipeline_result
    uri = register_without_hash("tiny-ner-before-hashes", TASK, stage_output(cfg, result.run_id, "train") / "model")
    name, version = uri.removeprefix("models:/").split("/")
    with pytest.raises(UnverifiedModel, match=rf"^{name} version {version} has no stored model hash .* give "
                                              r"--trust to load it"):
        gate_scoring.score_versions(name, [version], split, TASK)
    old = gate_scoring.score_versions(name, [version], split, TASK, trust=True)[version]
    assert old == scored
    _, _, evaluated = read_predictions_conll(stage_output(cfg, result.run_id, "evaluate") / "test_predictions.conll")
    assert old["pred"][len(SPACED):] == evaluated


def test_the_pipelines_gate_refuses_an_unhashed_champion_unless_the_config_trusts_it(pipeline_result):
    """The first run after upgrading, while @champion was registered before model hashes: the promote stage stops
    with one error naming the config key; with it, the gate scores that champion (the same weights: a tie). Every
    stage before register is the session run's, from the stage cache."""
    from mlflow import MlflowClient

    from nerflow.flows.pipeline import pipeline

    cfg, result = pipeline_result
    name = "tiny-ner-unhashed-champion"
    register_without_hash(name, TASK, stage_output(cfg, result.run_id, "train") / "model")
    MlflowClient().set_registered_model_alias(name, "champion", "1")
    other = cfg.model_copy(update={"registry": cfg.registry.model_copy(update={"model_name": name})})
    with pytest.raises(UnverifiedModel, match=rf"^{name} version 1 has no stored model hash .* give "
                                              r"promote.trust_unverified=true to load it"):
        pipeline(other)
    trusted = pipeline(other.model_copy(update={"promote": other.promote.model_copy(
        update={"trust_unverified": True})}))
    decision = trusted["promote"].decision
    assert (decision["decision"], decision["champion_f1"]) == ("rejected", decision["challenger_f1"]), decision
    assert str(MlflowClient().get_model_version_by_alias(name, "champion").version) == "1"
