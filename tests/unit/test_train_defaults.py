"""`train.lr: auto`: the documented rule (README, "Models and defaults that learn") is the one the code applies."""
from __future__ import annotations

import pytest

from nerflow.train import default_lr

MINILM, BERT_BASE, BERT_LARGE = 22_713_216, 108_310_272, 333_579_264


@pytest.mark.parametrize("n_params,steps,lr", [
    (MINILM, 38, 3e-4),        # 300 CoNLL sentences, 1 epoch: the recipe's 5e-5 learns nothing here
    (MINILM, 1_999, 3e-4),
    (MINILM, 2_000, 1e-4),     # long schedules: 3e-4 forgets the pretrained model
    (MINILM, 5_268, 1e-4),     # full CoNLL-2003, 3 epochs, batch 8
    (BERT_BASE, 38, 5e-5),
    (BERT_LARGE, 5_268, 2e-5),
])
def test_auto_lr_by_model_size_and_schedule_length(n_params, steps, lr):
    assert default_lr(n_params, steps) == lr
