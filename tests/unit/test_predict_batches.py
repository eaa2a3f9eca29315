"""Prediction's forward passes (`nerflow predict`, the served model, the gate's scorer) on a CPU: at most
`nerflow.batching.CPU_PREDICT_TOKENS` padded positions and `PREDICT_MAX_SEQUENCES` sequences each, the sizes measured
fastest there (docs/benchmarks.md, "Serving fast"), for both task types; and the answers do not depend on how the
windows were grouped into passes."""
from __future__ import annotations

import pytest
import torch

from nerflow import batching
from tests.conftest import TINY_TEXTS
from tests.unit.test_explain import classifier_folder, ner_folder


class Recorded:
    """The model, recording the (sequences, positions) of every forward pass."""

    def __init__(self, model):
        self.model, self.passes = model, []

    def __call__(self, input_ids, attention_mask, **kw):
        self.passes.append(tuple(input_ids.shape))
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kw)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_the_budget_is_per_device():
    assert batching.predict_batch_tokens("cpu") == batching.CPU_PREDICT_TOKENS == 4096
    assert batching.predict_batch_tokens("cuda") == batching.predict_batch_tokens("cuda:1") == \
        batching.GPU_PREDICT_TOKENS > batching.CPU_PREDICT_TOKENS


def test_ner_passes_fill_up_to_the_sequence_cap_and_answer_as_one_window_per_pass(tmp_path, monkeypatch):
    from nerflow.ner.predict import Predictor

    p = Predictor.load(ner_folder(tmp_path / "ner", TINY_TEXTS), device="cpu")
    p.model = Recorded(p.model)
    sentences = ([text.split()[:3] for text in TINY_TEXTS] * 300)[:300]   # short: ~5 positions each
    tags, _ = p.predict_words(sentences)
    passes = p.model.passes
    assert max(n for n, _ in passes) == batching.PREDICT_MAX_SEQUENCES   # not the 64 of before
    assert all(n * width <= batching.CPU_PREDICT_TOKENS for n, width in passes)
    assert sum(n for n, _ in passes) == len(sentences)

    monkeypatch.setattr(batching, "CPU_PREDICT_TOKENS", 1)   # every window a pass of its own
    p.model.passes.clear()
    alone, _ = p.predict_words(sentences)
    assert len(p.model.passes) == len(sentences) and alone == tags


@pytest.mark.parametrize("budget", [64, 160])
def test_textcat_passes_hold_the_token_budget_and_answer_the_same(tmp_path, monkeypatch, budget):
    from nerflow.textcat.predict import Classifier

    folder = classifier_folder(tmp_path / "cls", TINY_TEXTS, ["neg", "pos"], max_length=16)
    c = Classifier.load(folder, device="cpu")
    c.model = Recorded(c.model)
    texts = [" ".join(TINY_TEXTS[i % len(TINY_TEXTS)] for i in range(k, k + 3)) for k in range(40)]   # 3+ windows
    whole = c.probabilities(texts)
    assert max(n * width for n, width in c.model.passes) > budget   # the default budget holds more than `budget`

    monkeypatch.setattr(batching, "CPU_PREDICT_TOKENS", budget)
    c.model.passes.clear()
    cut = c.probabilities(texts)
    assert all(n * width <= budget for n, width in c.model.passes)
    assert max(n for n, _ in c.model.passes) == budget // 16   # windows of 16 positions: as many as fit
    torch.testing.assert_close(torch.as_tensor(cut), torch.as_tensor(whole), atol=1e-5, rtol=1e-4)
