"""The fast path's parts: token-budget batches, the step floor, shards, the batch rule in the config, frozen
parameters (bit-identical, no optimizer state) and the fused optimizer."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from nerflow import batching, optim
from nerflow.config import TrainConfig
from nerflow.ner.tokenization import Encoder
from nerflow.ner.training import train
from tests.conftest import TINY_TEXTS

LENGTHS = [5, 9, 17, 30, 12, 12, 3, 64, 8, 8, 20, 41] * 10


def test_token_batches_stay_within_the_budget_and_cover_every_example_once():
    plan = batching.plan_batches(LENGTHS, epochs=1, batch_tokens=128, batch_size=None, min_steps=0)
    batches = batching.epoch_batches(LENGTHS, plan, seed=3, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    for b in batches:
        width = batching.padded(max(LENGTHS[i] for i in b))
        assert width % 8 == 0 and (width * len(b) <= 128 or len(b) == 1)
    # length grouping: a batch pads little (the whole set pads ~2x in random batches of this size)
    padded = sum(len(b) * batching.padded(max(LENGTHS[i] for i in b)) for b in batches)
    assert padded / sum(LENGTHS) < 1.35


def test_batches_are_a_pure_function_of_seed_and_epoch():
    plan = batching.plan_batches(LENGTHS, 3, 128, None, 0)
    assert batching.epoch_batches(LENGTHS, plan, 3, 2) == batching.epoch_batches(LENGTHS, plan, 3, 2)
    assert batching.epoch_batches(LENGTHS, plan, 3, 1) != batching.epoch_batches(LENGTHS, plan, 3, 2)


def test_small_data_keeps_a_floor_of_steps():
    lengths = [20] * 30   # 30 sentences: one budget of 1024 tokens would be 1 step per epoch
    plan = batching.plan_batches(lengths, epochs=2, batch_tokens=1024, batch_size=None, min_steps=40)
    assert batching.total_steps(lengths, plan, 0, 2) >= 40
    big = batching.plan_batches([20] * 10_000, epochs=2, batch_tokens=1024, batch_size=None, min_steps=40)
    assert big.tokens == 1024   # enough data: the budget is as configured


def test_a_fixed_rate_on_batches_shrunk_for_small_data_is_pointed_out():
    # 80 reviews of 256 sub-tokens, 3 epochs, 100 steps at least: 614 tokens per step instead of 4,096
    lengths = [256] * 80
    plan = batching.plan_batches(lengths, epochs=3, batch_tokens=4096, batch_size=None, min_steps=100)
    said = batching.shrunk_batch_note(plan, 4096, 100, 2e-4)
    assert plan.tokens == 614 and said is not None
    assert "shrank the batches to 614 tokens (train.batch_tokens=4096)" in said and "train.lr=0.0002" in said
    assert "consider train.lr=5.6e-05" in said   # 2e-4 * (614 / 4096) ** (2/3)
    assert batching.shrunk_batch_note(plan, 4096, 100, "auto") is None      # auto follows the batch
    big = batching.plan_batches([256] * 2000, epochs=3, batch_tokens=4096, batch_size=None, min_steps=100)
    assert batching.shrunk_batch_note(big, 4096, 100, 2e-4) is None           # nothing shrank


def test_shards_partition_every_batch_and_the_plan_ignores_the_world_size():
    """The same steps whatever the number of processes: the plan has no world size; a rank whose share of a small
    batch is empty steps on a stand-in with loss weight 0 (nerflow.train)."""
    plan = batching.plan_batches(LENGTHS, 1, 64, None, 0)
    batches = batching.epoch_batches(LENGTHS, plan, 0, 1)
    assert any(len(b) < 3 for b in batches)   # some batch leaves a rank of 3 without a sequence
    for b in batches:
        shards = [batching.shard(b, r, 3) for r in range(3)]
        assert sorted(i for s in shards for i in s) == sorted(b)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_sentence_batches_when_batch_size_is_set():
    plan = batching.plan_batches(LENGTHS, 1, None, 8, 0)
    assert [len(b) for b in batching.epoch_batches(LENGTHS, plan, 0, 1)].count(8) == len(LENGTHS) // 8


def test_batch_size_clears_the_token_budget_and_both_at_once_is_refused():
    assert TrainConfig(batch_size=8).batch_tokens is None
    assert TrainConfig.model_validate(TrainConfig(batch_size=8).model_dump()).batch_size == 8   # a logged config
    with pytest.raises(ValidationError, match="batch_tokens or train.batch_size, not both"):
        TrainConfig(batch_size=8, batch_tokens=512)
    with pytest.raises(ValidationError, match="master_addr"):
        TrainConfig(nodes=2)


@pytest.mark.parametrize("freeze,frozen_prefixes", [
    ("word_embeddings", ["bert.embeddings.word_embeddings."]),
    ("embeddings", ["bert.embeddings."]),
    (1, ["bert.embeddings.", "bert.encoder.layer.0."]),
])
def test_frozen_parameters_are_bit_identical_after_training_and_absent_from_the_optimizer(
        tiny_model_dir, tiny_tokenizer, tmp_path, freeze, frozen_prefixes):
    from transformers import AutoModelForTokenClassification

    labels = ["O", "B-ENT", "I-ENT"]
    encoder = Encoder(tiny_tokenizer, 16, 4)
    sentences = [t.split() for t in TINY_TEXTS * 4]
    windows = [w for i, s in enumerate(sentences) for w in encoder.encode(i, s, [1] + [0] * (len(s) - 1), {1: 2})]
    cfg = TrainConfig(epochs=2, batch_tokens=64, min_steps=0, freeze=freeze, device="cpu", num_threads=1,
                      checkpoint_every=0)
    result = train(str(tiny_model_dir), tiny_tokenizer, labels, windows, windows[:5],
                   [["B-ENT"] + ["O"] * (len(s) - 1) for s in sentences[:5]], cfg, 0, tmp_path,
                   {"labels": labels, "max_length": 16, "stride": 4})
    before = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=3).state_dict()
    state = torch.load(sorted((tmp_path / "checkpoints").glob("step-*"))[-1], weights_only=False)
    after = state["model"]
    frozen = [n for n in after if any(n.startswith(p) for p in frozen_prefixes)]
    trained = [n for n in after if n not in frozen and n in before and "position_ids" not in n]
    assert frozen and result.frozen_parameters == sum(after[n].numel() for n in frozen)
    assert all(torch.equal(after[n], before[n]) for n in frozen)
    assert any(not torch.equal(after[n], before[n]) for n in trained)   # the rest did train
    moments = [s["exp_avg"] for s in state["optimizer"]["state"].values()]
    trainable = sum(p.numel() for n, p in after.items() if n not in frozen and "position_ids" not in n)
    assert sum(m.numel() for m in moments) == trainable   # an AdamW moment for every trained weight, none else


def test_the_optimizer_is_fused_where_the_build_has_it():
    model = torch.nn.Linear(4, 4)
    model.config = None
    optimizer, _ = optim.build_optimizer(model, 0.01, 1e-3, 1, 10)
    assert optimizer.defaults["fused"] is True


def test_freezing_more_layers_than_the_model_has_is_an_error(tiny_model_dir):
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=3)
    with pytest.raises(ValueError, match="train.freeze=5 but the model has 2 layers"):
        optim.freeze(model, 5)


def test_a_half_precision_checkpoint_trains_in_float32(tiny_model_dir, tiny_tokenizer, tmp_path):
    """transformers 5 loads a checkpoint in the dtype it was saved in; AdamW on fp16 weights would lose updates.
    The training model is fp32 (GPUs get bf16/fp16 through autocast)."""
    from transformers import AutoModel

    from nerflow.ner.training import trainable

    AutoModel.from_pretrained(tiny_model_dir, dtype=torch.float16).save_pretrained(tmp_path / "fp16")
    tiny_tokenizer.save_pretrained(tmp_path / "fp16")
    job = trainable(str(tmp_path / "fp16"), tiny_tokenizer, ["O", "B-X", "I-X"], [], [], [], TrainConfig(), {})
    assert {p.dtype for p in job.load_model().parameters()} == {torch.float32}
