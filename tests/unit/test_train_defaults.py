"""`train.lr: auto`: the documented rule (README, "Models and defaults that learn") is the one the code applies."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nerflow.config import TrainConfig
from nerflow.optim import default_lr

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
MINILM, BERT_BASE, BERT_LARGE = 22_713_216, 108_310_272, 333_579_264


@pytest.mark.parametrize("n_params,examples,batch,lr", [
    (MINILM, 300, 8, 3e-4),          # 300 CoNLL sentences, 1 epoch: the recipe's 5e-5 learns nothing here
    (MINILM, 300, 2.2, 3e-4),        # the step floor's small batches: never below the base
    (MINILM, 15_999, 8, 3e-4),
    (MINILM, 16_000, 8, 1e-4),       # long runs: 3e-4 at 8 per step forgets the pretrained model
    (MINILM, 42_126, 8, 1e-4),       # full CoNLL-2003, 3 epochs, batch 8
    (MINILM, 42_126, 42.2, 3.03e-4),  # ... at 1,024 tokens per step (~42 sentences): (42.2/8)**(2/3) = 3.03
    (BERT_BASE, 300, 8, 5e-5),
    (BERT_BASE, 42_126, 64, 2e-4),   # 5e-5 * 8**(2/3) = 5e-5 * 4
    (BERT_LARGE, 42_126, 8, 2e-5),
])
def test_auto_lr_by_model_size_run_length_and_batch(n_params, examples, batch, lr):
    assert default_lr(n_params, examples, batch) == pytest.approx(lr, rel=0.01)


def test_the_defaults_are_the_settings_the_speed_benchmark_measured():
    """The defaults are what `bench/train_speed.py` measured as nerflow's fast path (docs/benchmarks.md, issue 12),
    read from its newest result file: changing a default without measuring it again fails here. The benchmark
    names its device (`cpu`); the default picks one (`auto`)."""
    newest = max(BENCH_RESULTS.glob("train_speed-cpu-*.json"), key=lambda p: p.name.rsplit("-", 3)[-3:])
    (measured,) = {json.dumps(r["settings"], sort_keys=True) for r in json.loads(newest.read_text())["rows"]
                   if r["system"] == "nerflow"}
    measured = {**json.loads(measured), "device": "auto"}
    defaults = TrainConfig().model_dump()
    assert {k: v for k, v in defaults.items() if k in measured} == measured, newest
    # keys the measurement predates, at the values that leave its fast path as measured (none: full fine-tuning)
    assert {k: defaults[k] for k in defaults.keys() - measured.keys()} == \
        {"adapter": "none", "lora": defaults["lora"]}, newest
