"""The promotion gate scores a registered NER version as served on exactly the inputs evaluation scores (the
served-scorer protocol, nerflow.scoring), and still scores a version registered before the protocol through its
ordinary `predict`. Both use the session's `tiny-ner` version 1 (no training here) and one scoring of both
versions (the processes are the cost)."""
from __future__ import annotations

import json

import pytest

from nerflow import scoring, task_types
from nerflow.ner.data import Sentence, read_split, write_split
from nerflow.ner.evaluate import read_predictions_conll

from .corpus import LONG, SHORT
from .served import register_before_protocol, stage_output

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
    from nerflow.ner.tokenization import Encoder, encode_split

    model_dir = stage_output(cfg, run_id, "train") / "model"
    labels = json.loads((stage_output(cfg, run_id, "validate") / "labels.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    t = cfg.tokenize
    windows = encode_split(Encoder(tokenizer, t.max_length, t.stride, t.label_all_subtokens), sentences, labels)
    tags, _ = predict_windows(AutoModelForTokenClassification.from_pretrained(model_dir), windows,
                              [len(s.tokens) for s in sentences], dict(enumerate(labels)),
                              tokenizer.pad_token_id or 0)
    return tags


@pytest.fixture(scope="module")
def scored(pipeline_result, tmp_path_factory):
    """The session's version and the same weights registered before the protocol, each scored as served (one
    process each, at once) on the sentences above followed by the run's own test split."""
    cfg, result = pipeline_result
    tmp = tmp_path_factory.mktemp("served-scorer")
    old = register_before_protocol("tiny-ner-before-protocol", TASK, stage_output(cfg, result.run_id, "train")
                                   / "model", tmp)
    test = read_split(stage_output(cfg, result.run_id, "validate") / "test.jsonl")
    write_split(SPACED + test, tmp / "test.jsonl")
    new = f"models:/{MODEL}/{result['register'].version}"
    # warm processes, as the pipeline's gate uses them: the version registered before the protocol must still be
    # served by its own bundled nerflow (legacy answers), so the warm-up imported no nerflow
    with scoring.WarmScorers(3) as warm:
        scored = scoring.score_served({"new": new, "old": old}, tmp / "test.jsonl",
                                      task_types.entry(TASK, "promote"), warm=warm)
        spare = warm.take({})
        _, err = spare.communicate("", timeout=120)   # end of input without a request: it exits cleanly
    assert spare.returncode == 0, err
    return scored


def test_the_gate_scores_a_token_holding_a_space_as_one_token_like_evaluation(pipeline_result, scored):
    cfg, result = pipeline_result
    served = scored["new"]
    assert served["protocol"] == "examples" and "B-LOC" in served["labels"]
    assert [len(tags) for tags in served["pred"][:len(SPACED)]] == [len(s.tokens) for s in SPACED]
    assert served["pred"][:len(SPACED)] == evaluation_tags(cfg, result.run_id, SPACED)


def test_a_version_registered_before_the_protocol_is_scored_through_its_predict(pipeline_result, scored):
    """On ordinary tokens the old path (space-joined text, spans back to tags) and the protocol agree with each
    other and with the evaluate stage's own test predictions."""
    cfg, result = pipeline_result
    new, old = scored["new"], scored["old"]
    assert (new["protocol"], old["protocol"]) == ("examples", "legacy")
    assert old["labels"] == new["labels"] and old["multi_label"] is new["multi_label"] is False
    _, _, evaluated = read_predictions_conll(stage_output(cfg, result.run_id, "evaluate") / "test_predictions.conll")
    assert old["pred"][len(SPACED):] == new["pred"][len(SPACED):] == evaluated
