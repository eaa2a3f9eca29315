"""Multi-label that learns rare labels (nerflow.textcat.selection): epochs chosen by macro average precision and
scored with thresholds tuned on validation, positives weighted in the loss (`train.pos_weight`), the empty label
set a prediction like any other.

The end-to-end test plants a rare label: the word "fire" in every 12th text makes it `alert` (~8%), "good" makes
40% of the texts `pos`, and about half the texts have no label at all."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from nerflow.config import ConfigError, load_config
from nerflow.documents import predict_documents
from nerflow.textcat import evaluate, evaluation, selection, tokenization, training, validate
from nerflow.textcat.config import TextcatDataConfig as DataConfig
from nerflow.textcat.config import TextcatEvaluateConfig as EvaluateConfig
from nerflow.textcat.config import TextcatTokenizeConfig as TokenizeConfig
from nerflow.textcat.config import TextcatTrainConfig as TrainConfig
from nerflow.textcat.data import Document
from nerflow.textcat.predict import META_FILE, Classifier
from nerflow.textcat.task import TASK
from tests.unit.textcat.test_training import FILLER, build_word_model, pipeline_meta, prepare

LABELS = ["alert", "pos"]
TOKENIZE = TokenizeConfig(max_length=16, stride=4)
# Early stopping after one epoch without a better score makes the point sharply: at the second epoch this run's
# macro F1 at 0.5 thresholds has not moved (0.284, no text gets `alert`) while macro average precision has
# (0.60 -> 0.89). Measured with the 0.5-F1 rule on this same run (pos_weight auto): it stops after epoch 2 and keeps
# epoch 1, whose model finds 3 of 8 fresh `alert` texts and labels 6 others with it. Whether this tiny model learns
# the presence of one word at all depends on the seed (seeds 1-3 at these settings: 1, 0 and 8 of 8 found), so the
# run is held fixed: the word-level model of test_training (one sub-token per word), one thread, seed 5.
CFG = TrainConfig(epochs=6, lr=3e-3, freeze="none", batch_tokens=64, min_steps=0, checkpoint_every=0, log_every=5,
                  device="cpu", precision="fp32", num_threads=1, early_stopping_patience=1, pos_weight="auto")
SEED = 5


def planted_docs(n: int, seed: int) -> list[Document]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words, labels = [rng.choice(FILLER) for _ in range(rng.randint(4, 9))], []
        if i % 12 == 0:
            words.insert(rng.randrange(len(words) + 1), "fire")
            labels.append("alert")
        if i % 5 in (1, 3):
            words.insert(rng.randrange(len(words) + 1), "good")
            labels.append("pos")
        docs.append(Document(" ".join(words), labels, f"planted:{seed}:{i}"))
    return docs


@pytest.fixture(scope="module")
def rare_run(tmp_path_factory):
    model_dir = build_word_model(tmp_path_factory.mktemp("rare-bert"), [" ".join([*FILLER, "good", "fire"])])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train_docs, val_docs = planted_docs(96, 1), planted_docs(48, 2)
    segments, val_segments = prepare(tokenizer, TOKENIZE, LABELS, train_docs, val_docs)
    points: list[tuple[int, dict]] = []
    result = training.train(str(model_dir), tokenizer, LABELS, segments, val_segments, [d.labels for d in val_docs],
                            True, CFG, TOKENIZE, SEED, tmp_path_factory.mktemp("rare-out"),
                            pipeline_meta(TOKENIZE, True, LABELS),
                            on_metrics=lambda step, values, ms: points.append((step, dict(values))))
    epochs = [values for _, values in points if "train/epoch" in values]
    return {"result": result, "epochs": epochs, "val_docs": val_docs, "tokenizer": tokenizer}


def test_early_stopping_waits_while_a_rare_label_is_learnt_and_the_model_predicts_it(rare_run):
    result, epochs = rare_run["result"], rare_run["epochs"]
    assert [e["train/epoch"] for e in epochs] == [h["epoch"] for h in result.history]
    assert all({"val/f1", "val/f1_tuned", "val/accuracy_tuned", "val/average_precision"} <= set(e) for e in epochs)
    f1_at_half = [e["val/f1"] for e in epochs]
    # the old rule (F1 at 0.5, patience 1) would have stopped here and kept epoch 1 ...
    assert f1_at_half[1] <= f1_at_half[0], f1_at_half
    # ... while the model was learning: the score that decides rose, and training went on to a later, better epoch
    chosen = [e["val/average_precision"] for e in epochs]
    assert chosen[1] > chosen[0] and result.best_epoch >= 3, epochs
    assert result.best_score == pytest.approx(max(chosen)) == pytest.approx(chosen[result.best_epoch - 1])

    clf = Classifier.load(result.best_dir, device="cpu")
    fresh = planted_docs(96, 77)
    answers = clf.predict_text([d.text for d in fresh])
    rare = [("alert" in a["labels"], "alert" in d.labels) for a, d in zip(answers, fresh)]
    assert sum(got and gold for got, gold in rare) == sum(gold for _, gold in rare) == 8, rare   # every one found
    assert not any(got and not gold for got, gold in rare), rare                                  # and no other
    unlabelled = [a["labels"] for a, d in zip(answers, fresh) if not d.labels]
    assert len(unlabelled) == 52 and unlabelled == [[]] * 52   # no label above its threshold: the empty set


def test_the_saved_thresholds_are_those_tuned_on_validation_for_the_kept_weights(rare_run):
    result, val_docs = rare_run["result"], rare_run["val_docs"]
    best = rare_run["epochs"][result.best_epoch - 1]
    thresholds = json.loads((result.best_dir / META_FILE).read_text())["thresholds"]
    probs = Classifier.load(result.best_dir, device="cpu").probabilities([d.text for d in val_docs])
    gold = [d.labels for d in val_docs]
    assert thresholds == pytest.approx(list(evaluate.choose_thresholds(gold, probs, LABELS)), abs=1e-6)
    tuned = evaluate.score(gold, probs, LABELS, True, np.asarray(thresholds))
    assert (tuned.macro_f1, tuned.accuracy) == pytest.approx((best["val/f1_tuned"], best["val/accuracy_tuned"]))


def test_the_evaluate_stage_scores_the_kept_weights_as_their_epoch_was_scored(rare_run, tmp_path):
    result, val_docs = rare_run["result"], rare_run["val_docs"]
    best = rare_run["epochs"][result.best_epoch - 1]
    validated, tokenized, out = tmp_path / "validated", tmp_path / "tokenized", tmp_path / "out"
    for folder in (validated, tokenized, out):
        folder.mkdir()
    corpus = {"train": val_docs[:4], "validation": val_docs, "test": planted_docs(48, 3)}
    validate.write_validated(corpus, DataConfig(format="jsonl", multi_label=True, labels=LABELS), validated)
    tokenization.tokenize_validated(rare_run["tokenizer"], validated, TOKENIZE, tokenized)
    metrics = evaluation.evaluate_model(result.best_dir, validated, tokenized, EvaluateConfig(), out)
    assert metrics["val/best_f1"] == pytest.approx(best["val/f1_tuned"])   # the saved thresholds are that epoch's
    assert metrics["val/best_accuracy"] == pytest.approx(best["val/accuracy_tuned"])
    assert metrics["val/best_average_precision"] == pytest.approx(result.best_score)
    assert 0.9 <= metrics["test/average_precision"] <= 1.0 and metrics["test/f1"] >= 0.9, metrics
    predicted = [json.loads(line)["predicted"] for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    assert [] in predicted   # texts without a label are predicted the empty set in the evaluation artifacts too


def test_an_empty_label_set_is_answered_served_and_scored_as_a_hit(rare_run):
    """`nerflow predict` output, the served scorer's labels and subset accuracy for texts with no label."""
    clf = Classifier.load(rare_run["result"].best_dir, device="cpu")
    texts = ["the movie plot was long", "good film story", "fire scene music"]
    stats: dict = {}
    records = list(predict_documents(clf.predict_text, [{"id": i, "text": t} for i, t in enumerate(texts)], TASK,
                                     stats=stats))
    assert [r["labels"] for r in records] == [[], ["pos"], ["alert"]]
    assert stats["counts"] == {"label_pos": 1, "label_alert": 1} and TASK.describe_counts({}) == "no labels"
    assert clf.predict_examples([{"text": t} for t in texts]) == [[], ["pos"], ["alert"]]
    probs = clf.probabilities(texts)
    thresholds = np.asarray(clf.meta["thresholds"])
    assert evaluate.score([[], ["pos"], ["alert"]], probs, LABELS, True, thresholds).accuracy == 1.0
    assert evaluate.score([["pos"], ["pos"], ["alert"]], probs, LABELS, True, thresholds).accuracy == \
           pytest.approx(2 / 3)


def test_positive_weights_auto_count_the_training_examples_and_are_capped():
    rows = [[0], [], [], [1], [], [], [], [], [], [], [], [0, 1]] + [[]] * 88   # label 0: 2 of 100, label 1: 2
    assert selection.positive_weights(rows, 3, "auto") == [pytest.approx(10.0), pytest.approx(10.0), 1.0]
    rows = [[0], [0], [0], [1], [], [], [0, 0]]   # label 0 in 4 of 7 texts (a repeated id counts once), 1 in 1
    assert selection.positive_weights(rows, 2, "auto") == pytest.approx([3 / 4, 6.0])
    assert selection.positive_weights(rows, 2, 2.5) == [2.5, 2.5]
    assert selection.positive_weights(rows, 2, "none") is None


def test_the_loss_weights_only_the_positive_terms():
    logits, labels = torch.tensor([[0.3, -1.2], [2.0, 0.5]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plain = training.loss_sum(logits, labels, True)
    weighted = training.loss_sum(logits, labels, True, pos_weight=[3.0, 1.0])
    # only text 0's first label is a positive with weight 3: -log(sigmoid(0.3)) counts 3 times, averaged over 2 labels
    extra = 2 * float(torch.nn.functional.softplus(torch.tensor(-0.3))) / 2
    assert float(weighted - plain) == pytest.approx(extra, rel=1e-5)


def test_macro_average_precision_leaves_out_labels_without_a_positive():
    gold = [["x"], [], ["x"], []]
    probs = np.array([[0.9, 0.2], [0.8, 0.1], [0.4, 0.3], [0.1, 0.4]])
    # x ranks 0.9 (hit), 0.8 (miss), 0.4 (hit): precision 1 at recall 1/2, 2/3 at recall 1 -> AP = 1/2 + 1/3 = 5/6;
    # y has no positive and is left out
    assert selection.macro_average_precision(gold, probs, ["x", "y"]) == pytest.approx(5 / 6)
    assert selection.macro_average_precision([[], []], probs[:2], ["x", "y"]) == 0.0


def test_pos_weight_on_single_label_data_is_a_config_error_naming_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: text-classification\ndata:\n  format: jsonl\ntrain:\n  pos_weight: auto\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:5: train\.pos_weight=auto .* data\.multi_label=true"):
        load_config(path)
    assert load_config(path, ["data.multi_label=true"]).train.pos_weight == "auto"
    assert load_config(path, ["data.multi_label=true", "train.pos_weight=4"]).train.pos_weight == 4.0
    path.write_text("data:\n  format: conll\ntrain:\n  pos_weight: auto\n")   # NER: binary cross-entropy nowhere
    with pytest.raises(ConfigError, match=r"c\.yaml:4: config key 'train\.pos_weight' is not read by "
                                          r"token-classification \(it is a text-classification setting\)"):
        load_config(path)


def test_a_shared_train_section_is_read_as_the_text_classification_one():
    from nerflow.config import TrainConfig as SharedTrainConfig
    from nerflow.textcat.config import TextcatConfig, TextcatDataConfig

    cfg = TextcatConfig(data=TextcatDataConfig(format="jsonl"), train=SharedTrainConfig(epochs=2, batch_size=8))
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.batch_tokens, cfg.train.pos_weight) == \
           (2, 8, None, "none")

