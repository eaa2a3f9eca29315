"""The served-scorer protocol without MLflow: the predictors the gate loads implement it, NER predicts from the
token lists as given, and `scoring.score` asks each scorer once. Registered versions scored through it:
tests/integration/test_served_scorer.py."""
from __future__ import annotations

import pytest

from nerflow import scoring, task_types

NER, TEXTCAT = task_types.entry("token-classification", "promote"), task_types.entry("text-classification", "promote")
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# "New Salem" and "Maria Lopez" are one token each, as a JSON-lines corpus may hold them
EXAMPLES = [{"tokens": ["Maria Lopez", "flew", "to", "New Salem", "."], "tags": ["B-PER", "O", "O", "B-LOC", "O"],
             "source": "t.jsonl:1", "doc": 0},
            {"tokens": ["John", "Smith", "visited", "Berlin", "."], "tags": ["B-PER", "I-PER", "O", "B-LOC", "O"],
             "source": "t.jsonl:2", "doc": 0}]


def predictor(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForTokenClassification

    from nerflow.ner.predict import Predictor

    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(LABELS))
    return Predictor(model, tiny_tokenizer, LABELS, max_length=16, stride=4)


def test_ner_predicts_the_token_lists_as_evaluation_encodes_them(tiny_model_dir, tiny_tokenizer):
    from nerflow.ner.predict import predict_windows
    from nerflow.ner.tokenization import Encoder

    p = predictor(tiny_model_dir, tiny_tokenizer)
    assert isinstance(p, scoring.Scorer)
    assert p.labels == LABELS and p.multi_label is False
    pred = p.predict_examples(EXAMPLES)
    assert [len(tags) for tags in pred] == [len(e["tokens"]) for e in EXAMPLES]
    encoder = Encoder(tiny_tokenizer, 16, 4)
    windows = [w for i, e in enumerate(EXAMPLES) for w in encoder.encode(i, e["tokens"], None)]
    expected, _ = predict_windows(p.model, windows, [len(e["tokens"]) for e in EXAMPLES], dict(enumerate(LABELS)),
                                  tiny_tokenizer.pad_token_id or 0)
    assert pred == expected and p.predict_examples([]) == []


def test_ner_examples_and_gold_come_from_the_canonical_split(tmp_path):
    from nerflow.ner.data import Sentence, write_split

    write_split([Sentence(**e) for e in EXAMPLES], tmp_path / "test.jsonl")
    assert NER.examples(tmp_path / "test.jsonl") == EXAMPLES
    assert NER.gold(EXAMPLES) == [e["tags"] for e in EXAMPLES]


def test_text_classification_speaks_the_protocol(tmp_path):
    from nerflow.textcat.data import Document, write_split
    from nerflow.textcat.predict import Classifier

    docs = [Document("a great film", ["pos"], "r:1"), Document("dull", ["neg"], "r:2")]
    write_split(docs, tmp_path / "test.jsonl")
    examples = TEXTCAT.examples(tmp_path / "test.jsonl")
    assert examples == [{"text": "a great film", "labels": ["pos"], "source": "r:1"},
                        {"text": "dull", "labels": ["neg"], "source": "r:2"}]
    assert TEXTCAT.gold(examples) == [["pos"], ["neg"]]

    classifier = Classifier(None, None, {"labels": ["neg", "pos"], "multi_label": True})
    assert isinstance(classifier, scoring.Scorer) and classifier.labels == ["neg", "pos"]
    assert classifier.multi_label is True


def test_score_asks_each_scorer_once_in_its_label_space_and_refuses_a_short_answer():
    class Fixed:
        def __init__(self, labels, answers, multi=False):
            self.labels, self.answers, self.multi_label, self.asked = labels, answers, multi, 0

        def predict_examples(self, examples):
            self.asked += 1
            return self.answers

    good, short = Fixed(("neg", "pos"), [["pos"], ["neg"]], multi=True), Fixed(["neg"], [["neg"]])
    assert isinstance(good, scoring.Scorer)
    assert scoring.score({"1": good}, [{"text": "a"}, {"text": "b"}]) == {
        "1": {"labels": ["neg", "pos"], "multi_label": True, "pred": [["pos"], ["neg"]]}}
    assert good.asked == 1 and scoring.score({"1": good}, [])["1"]["pred"] == [] and good.asked == 1
    with pytest.raises(RuntimeError, match="model 2 answered 1 predictions for 2 examples"):
        scoring.score({"2": short}, [{"text": "a"}, {"text": "b"}])
