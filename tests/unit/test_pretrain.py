"""Pretraining: held-out text never enters it (exact and near duplicates removed and counted), and MLM through
`fit` resumes mid-epoch exactly."""
from __future__ import annotations

import time

import pytest
import torch

from nerflow.checkpoints import list_checkpoints
from nerflow.config import TrainConfig
from nerflow.config_pretrain import PretrainConfig
from nerflow.decontaminate import decontaminate
from nerflow.pretrain import Masker, Piece, cut, mask, mask_generator, pretrain, read_texts, split_heldout
from tests.conftest import TINY_TEXTS

HELD_OUT = [
    "The committee met in Geneva on Tuesday to discuss the new trade agreement between the two countries .",
    "Shares of the company rose sharply after the quarterly results beat analyst expectations by a wide margin .",
    "Short one .",
]


def test_exact_and_near_duplicates_of_held_out_text_are_removed_and_counted():
    near = ("The committee met in Geneva on Tuesday to discuss the new trade agreement between the two countries "
            "today .")   # one word added: 16 of 17 five-grams shared (Jaccard 16/17)
    similar = ("The committee met in Geneva on Monday to review an old trade agreement between the three "
               "countries .")   # same topic and words, few shared 5-grams: kept
    texts = [
        HELD_OUT[0],                                            # exact
        "  THE committee   met in GENEVA on tuesday to discuss the new trade agreement between the two "
        "countries .",                                          # case and whitespace
        "Ｓｈａｒｅｓ of the company rose sharply after the quarterly results beat analyst expectations by a "
        "wide margin .",                                        # NFKC: full-width letters
        "short ONE .",                                          # a text under 5 words: exact only
        near,
        similar,
        "Maria Lopez works for Northwind Trading in New Salem .",
    ]
    started = time.perf_counter()
    result = decontaminate(texts, HELD_OUT)
    assert (result.exact, result.near, result.removed) == (4, 1, 5)
    assert result.texts == [similar, texts[-1]]
    assert time.perf_counter() - started < 1.0


def test_decontamination_is_fast_on_many_words():
    words = [f"w{i % 997}" for i in range(300_000)]
    texts = [" ".join(words[i:i + 30]) + f" end{i}" for i in range(0, len(words), 30)]   # 10k texts, 310k words
    held_out = texts[::50]
    started = time.perf_counter()
    result = decontaminate(texts, held_out)
    assert result.exact == len(held_out) and result.removed >= len(held_out)
    assert time.perf_counter() - started < 10.0


def test_masking_is_the_80_10_10_rule_and_depends_only_on_seed_epoch_example():
    ids = [2] + list(range(10, 4010)) + [3]
    inputs, labels = mask(ids, mask_generator(1, 1, 0), 0.15, mask_id=4, vocab_size=5000)
    chosen = labels != -100
    assert not chosen[0] and not chosen[-1]
    assert 0.12 < chosen.float().mean() < 0.18
    masked = (inputs == 4) & chosen
    kept = (inputs == torch.tensor(ids)) & chosen
    assert 0.75 < masked.sum() / chosen.sum() < 0.85 and 0.05 < kept.sum() / chosen.sum() < 0.15
    again, _ = mask(ids, mask_generator(1, 1, 0), 0.15, mask_id=4, vocab_size=5000)
    other, _ = mask(ids, mask_generator(1, 2, 0), 0.15, mask_id=4, vocab_size=5000)
    assert torch.equal(inputs, again) and not torch.equal(inputs, other)
    masker = Masker(1, 0.15, 4, 0, 5000)
    masker.start_epoch(3)
    batch = masker.collate([Piece(7, ids[:50]), Piece(0, ids)])
    assert torch.equal(batch["input_ids"][1], mask(ids, mask_generator(1, 3, 0), 0.15, 4, 5000)[0])


def test_read_texts_names_the_key_for_a_missing_path(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("first line\n\n  second line \n")
    assert read_texts([tmp_path / "a"]) == ["first line", "second line"]
    with pytest.raises(FileNotFoundError, match="pretrain.text"):
        read_texts([tmp_path / "missing.txt"])


SETTINGS = PretrainConfig(enabled=True, epochs=2, lr=1e-3, max_length=16, batch_tokens=32, heldout_every=5)
LOOP = TrainConfig(checkpoint_every=3, keep_checkpoints=2, log_every=2, device="cpu", precision="fp32",
                   num_threads=1)
TEXTS = TINY_TEXTS * 4


class CrashingPieces(list):
    def __init__(self, pieces, fetches_ok: int):
        super().__init__(pieces)
        self.fetches_left = fetches_ok

    def __getitem__(self, i):
        if self.fetches_left == 0:
            raise RuntimeError("simulated crash")
        self.fetches_left -= 1
        return super().__getitem__(i)


def test_pretraining_resumes_mid_epoch_exactly(tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch):
    from nerflow import pretrain as module

    calls_ref: list = []
    ref = pretrain(str(tiny_model_dir), tiny_tokenizer, TEXTS, SETTINGS, LOOP, 3, tmp_path / "ref",
                   lambda step, values, ms: calls_ref.append((step, values)))
    assert ref.steps >= 12 and ref.epochs_run == 2   # 6+ steps per epoch: the crash below falls mid-epoch
    assert any("train/loss" in v for _, v in calls_ref) and any("val/loss" in v for _, v in calls_ref)
    assert (tmp_path / "ref" / "best" / "config.json").exists()

    real = module.mlm_trainable

    def crashing(*args, **kwargs):   # the same job, whose examples fail after 5 steps' worth of fetches
        job = real(*args, **kwargs)
        from dataclasses import replace

        from nerflow import batching
        plan = batching.plan_batches(job.lengths, 2, SETTINGS.batch_tokens, None, 0)
        fetches = sum(len(b) for b in batching.epoch_batches(job.lengths, plan, 3, 1)[:5])
        return replace(job, examples=CrashingPieces(job.examples, fetches))

    monkeypatch.setattr(module, "mlm_trainable", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(str(tiny_model_dir), tiny_tokenizer, TEXTS, SETTINGS, LOOP, 3, tmp_path / "resumed")
    monkeypatch.setattr(module, "mlm_trainable", real)
    assert list_checkpoints(tmp_path / "resumed" / "checkpoints")[-1].name.startswith("step-00000003")
    resumed = pretrain(str(tiny_model_dir), tiny_tokenizer, TEXTS, SETTINGS, LOOP, 3, tmp_path / "resumed")
    assert resumed.weights_sha256 == ref.weights_sha256
    assert (resumed.best_score, resumed.history) == (ref.best_score, ref.history)


def test_long_texts_are_cut_in_pieces_of_max_length(tiny_tokenizer):
    pieces = cut(tiny_tokenizer, [" ".join(TINY_TEXTS)], 8)
    assert len(pieces) > 5 and all(len(p.input_ids) <= 8 for p in pieces)
    assert [p.index for p in pieces] == list(range(len(pieces)))


def test_the_stage_removes_held_out_text_and_its_model_is_a_starting_point(tiny_model_dir, tmp_path):
    import json

    from transformers import AutoModelForTokenClassification

    from nerflow.prefect_tasks.tracking import regrouped
    from nerflow.pretrain import pretrain_stage

    validated = tmp_path / "validated"
    validated.mkdir()
    for split, texts in (("train", TINY_TEXTS), ("validation", HELD_OUT[:1]), ("test", HELD_OUT[1:2])):
        (validated / f"{split}.jsonl").write_text("".join(json.dumps({"tokens": t.split(), "tags": []}) + "\n"
                                                          for t in texts))
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("\n".join([*TINY_TEXTS * 2, HELD_OUT[0].upper(), HELD_OUT[1] + " indeed"]) + "\n")
    settings = SETTINGS.model_copy(update={"epochs": 1, "text": (str(unlabelled),)})
    summary = pretrain_stage(str(tiny_model_dir), validated, settings, LOOP, 3, tmp_path / "work")
    assert (summary["texts"], summary["removed_exact"], summary["removed_near"]) == (12, 1, 1)
    # tokens seen: exactly the sub-tokens of the pieces trained on (the held-out lines are not), each epoch
    from transformers import AutoTokenizer

    trained_on, _ = split_heldout(TINY_TEXTS * 2, settings.heldout_every)
    pieces = cut(AutoTokenizer.from_pretrained(tiny_model_dir), trained_on, settings.max_length)
    assert summary["steps"] > 0 and summary["tokens_seen"] == settings.epochs * sum(len(p.input_ids) for p in pieces)
    model = AutoModelForTokenClassification.from_pretrained(summary["best_dir"], num_labels=3)
    assert model.config.num_labels == 3
    assert regrouped({"train/loss": 1.0, "val/loss": 2.0}, "pretrain") == {"pretrain/loss": 1.0,
                                                                          "pretrain/val_loss": 2.0}


def test_too_few_texts_left_after_decontamination_is_one_clear_error(tiny_model_dir, tmp_path):
    """Task-adaptive pretraining on a corpus whose training texts all reappear in validation or test: nothing is
    left to pretrain on, and the error says why (not "got 0 texts")."""
    import json

    from nerflow.pretrain import pretrain_stage

    validated = tmp_path / "validated"
    validated.mkdir()
    for split, texts in (("train", HELD_OUT[:2]), ("validation", HELD_OUT[:1]), ("test", HELD_OUT[1:2])):
        (validated / f"{split}.jsonl").write_text("".join(json.dumps({"tokens": t.split(), "tags": []}) + "\n"
                                                          for t in texts))
    with pytest.raises(ValueError, match=r"the training texts \(pretrain.text unset\): 2 texts, 2 exact and 0 near "
                                         r"duplicates of validation/test texts removed, 0 left"):
        pretrain_stage(str(tiny_model_dir), validated, SETTINGS, LOOP, 3, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_a_base_model_without_a_masked_lm_head_is_said_and_counted(tiny_model_dir, tmp_path, caplog):
    import json
    import logging

    from nerflow.pretrain import new_head_weights, pretrain_stage

    validated = tmp_path / "validated"
    validated.mkdir()
    for split, texts in (("train", TINY_TEXTS), ("validation", HELD_OUT[:1]), ("test", HELD_OUT[1:2])):
        (validated / f"{split}.jsonl").write_text("".join(json.dumps({"tokens": t.split(), "tags": []}) + "\n"
                                                          for t in texts))
    # the tiny model is saved as an encoder alone, as sentence-embedding models (the offline MiniLM) are
    missing = new_head_weights(str(tiny_model_dir))
    assert missing and all(name.startswith("cls.") for name in missing)
    with caplog.at_level(logging.WARNING, logger="nerflow.pretrain"):
        summary = pretrain_stage(str(tiny_model_dir), validated, SETTINGS.model_copy(update={"epochs": 1}), LOOP, 3,
                                 tmp_path / "work")
    assert summary["new_head_weights"] == len(missing)
    assert [r.getMessage() for r in caplog.records if "no masked-LM head" in r.getMessage()] != []
    # pretraining's own output carries the head it learnt: pretraining it again starts from that head, quietly
    caplog.clear()
    assert new_head_weights(summary["best_dir"]) == []
    with caplog.at_level(logging.WARNING, logger="nerflow.pretrain"):
        again = pretrain_stage(summary["best_dir"], validated, SETTINGS.model_copy(update={"epochs": 1}), LOOP, 3,
                               tmp_path / "again")
    assert again["new_head_weights"] == 0 and not [r for r in caplog.records if "masked-LM head" in r.getMessage()]
