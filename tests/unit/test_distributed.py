"""Data-parallel training through torchrun (gloo, 2 CPU processes) against one process: the same optimizer steps,
identical weights on every rank, the same validation F1 within a stated tolerance; two local "nodes"; a resume with
the same world size; another world size refused."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from nerflow import launch
from nerflow.checkpoints import list_checkpoints
from nerflow.config import LoraConfig, TrainConfig
from nerflow.ner import data, tokenization
from nerflow.ner.data import Sentence
from nerflow.train import TrainingInterrupted
from tests.conftest import TINY_TEXTS, build_tiny_model

LABELS = ["O", "B-ENT", "I-ENT"]
# No dropout: then one process and two differ only in the order floats are summed (the gradient all-reduce), so
# their weights agree to float rounding and their F1 should too. Budget 64: ~12 steps per epoch over 3 epochs.
TRAIN = TrainConfig(epochs=3, batch_tokens=64, min_steps=0, checkpoint_every=4, log_every=2, device="cpu",
                    num_threads=1, early_stopping_patience=0)
F1_TOLERANCE = 0.05   # about one entity of the 26 validation entities, should rounding flip one decision


def tags_of(words: list[str]) -> list[str]:
    tags: list[str] = []
    for i, w in enumerate(words):
        tags.append("O" if i == 0 or not w[:1].isupper() else "I-ENT" if tags and tags[-1] != "O" else "B-ENT")
    return tags


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The folders a pipeline leaves for the train stage: validated splits and windows."""
    root = tmp_path_factory.mktemp("ddp-inputs")
    model_dir = build_tiny_model(root / "model", TINY_TEXTS * 20, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sentences = {"train": [t.split() for t in TINY_TEXTS * 8], "validation": [t.split() for t in TINY_TEXTS * 2]}
    validated, windows = root / "validated", root / "windows"
    validated.mkdir()
    (validated / "labels.json").write_text(json.dumps(LABELS))
    encoder = tokenization.Encoder(tokenizer, 16, 4)
    for split, words in sentences.items():
        rows = [Sentence(w, tags_of(w), f"x:{i}") for i, w in enumerate(words)]
        data.write_split(rows, validated / f"{split}.jsonl")
        tokenization.save_windows(tokenization.encode_split(encoder, rows, LABELS), windows / split)
    return {"model_path": str(model_dir), "validated": str(validated), "tokenized": str(windows)}


def job(inputs, out: Path, **train) -> dict:
    return {"task": "token-classification", **inputs, "train": TRAIN.model_copy(update=train).model_dump(mode="json"),
            "seed": 3, "out_dir": str(out), "meta": {"labels": LABELS, "max_length": 16, "stride": 4}}


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(list_checkpoints(out / "checkpoints")[-1], weights_only=False)["model"]


@pytest.fixture(scope="module")
def one_process(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    return out, launch.train(job(inputs, out))


@pytest.fixture(scope="module")
def two_processes(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    return out, launch.train(job(inputs, out, devices=2))


def test_two_processes_make_the_same_steps_and_reach_the_same_model(one_process, two_processes):
    (out1, r1), (out2, r2) = one_process, two_processes
    assert r2["world_size"] == 2 and r1["world_size"] == 1
    assert r2["steps"] == r1["steps"] > 20
    ranks = {p.name: p.read_text() for p in out2.glob("weights-rank*.sha256")}
    assert len(ranks) == 2 and len(set(ranks.values())) == 1, ranks        # identical weights on both ranks
    assert ranks["weights-rank0.sha256"] == r2["weights_sha256"]
    mine, theirs = weights(out2), weights(out1)
    assert all(torch.allclose(mine[k].float(), theirs[k].float(), atol=1e-4) for k in theirs)
    assert abs(r2["best_score"] - r1["best_score"]) <= F1_TOLERANCE
    assert [h["step"] for h in r2["history"]] == [h["step"] for h in r1["history"]]


def test_only_rank_0_reports_metrics(inputs, two_processes):
    out, result = two_processes
    points = [json.loads(line) for line in (out / launch.METRICS_FILE).read_text().splitlines()]
    losses = [step for step, values, _ in points if "train/loss" in values]
    assert losses == list(range(2, result["steps"] + 1, 2))   # every log_every steps, once each
    assert sum("val/f1" in values for _, values, _ in points) == 3


def test_two_local_nodes_train_like_two_processes_on_one(inputs, two_processes, tmp_path):
    port = free_port()
    spec = job(inputs, tmp_path, nodes=2, master_addr="127.0.0.1", master_port=port)
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def node(rank: int) -> None:
        try:
            if rank == 1:   # a second machine reads the job node 0 wrote into the shared folder
                while not (tmp_path / launch.JOB_FILE).is_file():
                    time.sleep(0.1)
                results[rank] = launch.torchrun(json.loads((tmp_path / launch.JOB_FILE).read_text()), node_rank=1)
            else:
                results[rank] = launch.torchrun(spec, node_rank=0)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert results[0]["world_size"] == 2 and results[0]["steps"] == two_processes[1]["steps"]
    assert results[0]["weights_sha256"] == two_processes[1]["weights_sha256"]   # same ranks, same sums, same bits


def test_an_interrupted_run_resumes_with_the_same_world_size_and_refuses_another(inputs, two_processes, tmp_path):
    spec = job(inputs, tmp_path, devices=2)
    stopper = threading.Thread(target=_stop_when_started, args=(tmp_path,))
    stopper.start()
    with pytest.raises(TrainingInterrupted, match="stopped at step 2 "):
        launch.train(spec)
    stopper.join()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000002"]
    with pytest.raises(ValueError, match="a run of 2 processes; resume it with 2 processes"):
        launch.train(job(inputs, tmp_path))   # one process: refused, nothing trained
    result = launch.train(spec)
    assert result["weights_sha256"] == two_processes[1]["weights_sha256"]
    assert result["history"] == two_processes[1]["history"]


def _stop_when_started(out: Path) -> None:
    """As Ctrl-C in `nerflow run` does: the STOP file, which every rank reads at its first exchange (step 2)."""
    deadline = time.monotonic() + 60
    while not (out / launch.JOB_FILE).is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    (out / launch.STOP_FILE).write_text("SIGINT")


def test_lora_two_processes_reach_the_same_model_as_one(inputs, tmp_path):
    """`train.adapter: lora` under DDP: the peft-wrapped model (frozen base, adapters + head trained) steps alike."""
    out1, out2 = tmp_path / "one", tmp_path / "two"
    # no adapter dropout: like the tiny model's own, ranks would draw other masks than the single process does
    lora = {"adapter": "lora", "lora": LoraConfig(dropout=0.0), "epochs": 1, "lr": 5e-3}
    r1, r2 = launch.train(job(inputs, out1, **lora)), launch.train(job(inputs, out2, **lora, devices=2))
    assert r2["world_size"] == 2 and r2["steps"] == r1["steps"]
    assert r2["trainable_parameters"] == r1["trainable_parameters"] > 0
    mine, theirs = weights(out2), weights(out1)
    assert any("lora_B" in k for k in theirs)
    assert all(torch.allclose(mine[k].float(), theirs[k].float(), atol=1e-4) for k in theirs)
    assert abs(r2["best_score"] - r1["best_score"]) <= F1_TOLERANCE


def test_a_distilled_student_two_processes_reach_the_same_model_as_one(inputs, one_process, tmp_path):
    """The distill stage's job (nerflow.distill) under DDP: each rank runs the teacher on its share of the batch,
    and the student steps as in one process."""
    from nerflow.config_distill import DistillConfig

    teacher, _ = one_process
    settings = DistillConfig(enabled=True, layers=1, epochs=1, lr=5e-3).model_dump(mode="json")

    def student(out: Path, **train) -> dict:
        return {**job(inputs, out, **train), "model_path": str(teacher / "best"), "distill": settings,
                "entry": "nerflow.distill:distill_job"}

    r1 = launch.train(student(tmp_path / "one"))
    r2 = launch.train(student(tmp_path / "two", devices=2))
    assert r2["world_size"] == 2 and r2["steps"] == r1["steps"] > 0
    mine, theirs = weights(tmp_path / "two"), weights(tmp_path / "one")
    assert not any(".layer.1." in k for k in theirs) and any(".layer.0." in k for k in theirs)   # one layer kept
    assert all(torch.allclose(mine[k].float(), theirs[k].float(), atol=1e-4) for k in theirs)
    assert abs(r2["best_score"] - r1["best_score"]) <= F1_TOLERANCE
