"""The served-scorer protocol without MLflow: the predictors and served classes implement it, NER predicts from the
token lists as given, and the legacy request and answers of versions registered before it read as they always did
(tasks/score_served*.py, replaced). The served processes themselves: tests/integration/test_served_scorer.py."""
from __future__ import annotations

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
    from nerflow.ner.serving import NerModel
    from nerflow.ner.tokenization import Encoder

    p = predictor(tiny_model_dir, tiny_tokenizer)
    served = NerModel()
    served.predictor = p          # what load_context sets
    assert isinstance(p, scoring.Scorer) and isinstance(served, scoring.Scorer)
    assert served.labels == LABELS and served.multi_label is False
    pred = served.predict_examples(EXAMPLES)
    assert [len(tags) for tags in pred] == [len(e["tokens"]) for e in EXAMPLES]
    encoder = Encoder(tiny_tokenizer, 16, 4)
    windows = [w for i, e in enumerate(EXAMPLES) for w in encoder.encode(i, e["tokens"], None)]
    expected, _ = predict_windows(p.model, windows, [len(e["tokens"]) for e in EXAMPLES], dict(enumerate(LABELS)),
                                  tiny_tokenizer.pad_token_id or 0)
    assert pred == expected and served.predict_examples([]) == []


def test_ner_examples_and_gold_come_from_the_canonical_split(tmp_path):
    from nerflow.ner.data import Sentence, write_split

    write_split([Sentence(**e) for e in EXAMPLES], tmp_path / "test.jsonl")
    assert NER.examples(tmp_path / "test.jsonl") == EXAMPLES
    assert NER.gold(EXAMPLES) == [e["tags"] for e in EXAMPLES]


def test_the_ner_legacy_request_is_the_space_joined_text_and_its_spans_read_back_as_tags():
    request = NER.legacy_request(EXAMPLES)
    assert request.inputs == ["Maria Lopez flew to New Salem .", "John Smith visited Berlin ."]
    assert request.params == {"pretokenized": True} and request.labels_at == "predictor.labels"
    assert request.multi_label_at is None
    answers = [[{"type": "PER", "start": 0, "end": 11}, {"type": "LOC", "start": 20, "end": 29}],
               [{"type": "PER", "start": 0, "end": 10}, {"type": "LOC", "start": 19, "end": 25}]]
    assert NER.from_legacy(EXAMPLES, answers) == NER.gold(EXAMPLES)
    # an old model reads "New Salem" as two words: an entity on "Salem" alone lands on the token that holds it
    assert NER.from_legacy(EXAMPLES[:1], [[{"type": "LOC", "start": 24, "end": 29}]]) == [
        ["O", "O", "O", "B-LOC", "O"]]


def test_text_classification_speaks_the_protocol_and_reads_old_answers(tmp_path):
    from nerflow.textcat.data import Document, write_split
    from nerflow.textcat.predict import Classifier
    from nerflow.textcat.serving import TextClassifierModel

    docs = [Document("a great film", ["pos"], "r:1"), Document("dull", ["neg"], "r:2")]
    write_split(docs, tmp_path / "test.jsonl")
    examples = TEXTCAT.examples(tmp_path / "test.jsonl")
    assert examples == [{"text": "a great film", "labels": ["pos"], "source": "r:1"},
                        {"text": "dull", "labels": ["neg"], "source": "r:2"}]
    assert TEXTCAT.gold(examples) == [["pos"], ["neg"]]
    request = TEXTCAT.legacy_request(examples)
    assert request.inputs == ["a great film", "dull"] and request.params is None
    assert (request.labels_at, request.multi_label_at) == ("classifier.labels", "classifier.meta.multi_label")
    assert TEXTCAT.from_legacy(examples, [{"label": "pos", "score": 0.9}, {"labels": ["neg", "pos"]}]) == [
        ["pos"], ["neg", "pos"]]

    served = TextClassifierModel()
    served.classifier = Classifier(None, None, {"labels": ["neg", "pos"], "multi_label": True})
    assert isinstance(served, scoring.Scorer) and served.labels == ["neg", "pos"] and served.multi_label is True


def test_warm_scorers_serve_one_request_each_only_for_their_settings_and_close_kills_the_rest():
    env = {"MLFLOW_TRACKING_URI": "sqlite:////nowhere/mlflow.db"}
    with scoring.WarmScorers(3, env=env) as warm:
        procs = list(warm.procs)
        assert warm.take({"MLFLOW_TRACKING_URI": "sqlite:////elsewhere.db"}) is None   # other settings: a fresh one
        procs[0].kill()
        procs[0].wait()
        taken = warm.take(dict(env))
        assert taken is procs[1]                      # a process that died warming up is passed over
        assert warm.procs == [procs[2]]               # and each process serves one request
    assert procs[2].poll() is not None                # not taken: killed and reaped on close
    assert taken.poll() is None                       # taken: the caller's to finish
    taken.kill()
    taken.communicate()

