"""Resumable training: a crash, SIGKILL or SIGTERM mid-epoch, then `train` again on the same folder, ends exactly
where an uninterrupted run ends (weights, F1, history) and hands `on_metrics` the same points, none twice."""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from nerflow import batching
from nerflow.checkpoints import list_checkpoints
from nerflow.config import TrainConfig
from nerflow.ner.tokenization import Encoder
from nerflow.ner.training import train
from tests.conftest import TINY_TEXTS

LABELS = ["O", "B-ENT", "I-ENT"]
SEED = 7
# The defaults (token-budget batches, fused AdamW, frozen word embeddings, loss kept on the device), with a budget
# that cuts the 40 windows into 12 steps per epoch, 36 in all; no step floor for this tiny set.
N_WINDOWS, STEPS_PER_EPOCH = 40, 12
CFG = TrainConfig(epochs=3, batch_tokens=48, min_steps=0, checkpoint_every=3, keep_checkpoints=2, log_every=2,
                  device="cpu", precision="fp32", num_threads=1, early_stopping_patience=0)
META = {"labels": LABELS, "max_length": 12, "stride": 3}

# The subprocess: trains; its on_metrics records every point it received and, on its first call (the flush after
# the checkpoint at step 3), announces `ready` and waits for `go`, so the test can kill or signal it right there.
CHILD = r'''
import json, logging, pickle, sys, time
from pathlib import Path
from transformers import AutoTokenizer
from nerflow.ner.training import train

job = pickle.loads(Path(sys.argv[1]).read_bytes())
ready, go, calls = Path(job["ready"]), Path(job["go"]), Path(job["calls"])

def on_metrics(step, values, timestamp_ms):
    if not ready.exists():
        ready.write_text("")
        deadline = time.monotonic() + 60
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    with calls.open("a") as f:
        f.write(json.dumps([step, values]) + "\n")

logging.basicConfig(level=logging.INFO)
train(job["model_dir"], AutoTokenizer.from_pretrained(job["model_dir"]), job["labels"], job["train"], job["val"],
      job["gold"], job["cfg"], job["seed"], Path(job["out_dir"]), job["meta"], on_metrics=on_metrics)
'''


def tags_of(words: list[str]) -> list[str]:
    """Capitalised words after the first are entities: a pattern even a tiny model can start to learn."""
    tags: list[str] = []
    for i, w in enumerate(words):
        tags.append("O" if i == 0 or not w[:1].isupper() else "I-ENT" if tags and tags[-1] != "O" else "B-ENT")
    return tags


def encode(encoder: Encoder, sentences: list[list[str]]):
    label_id = {t: i for i, t in enumerate(LABELS)}
    return [w for i, s in enumerate(sentences) for w in encoder.encode(i, s, [label_id[t] for t in tags_of(s)], {1: 2})]


@pytest.fixture(scope="module")
def data(tiny_model_dir, tiny_tokenizer):
    encoder = Encoder(tiny_tokenizer, max_length=12, stride=3)
    train_windows = encode(encoder, [t.split() for t in TINY_TEXTS * 6])[:N_WINDOWS]
    val_sentences = [t.split() for t in TINY_TEXTS]
    assert len(train_windows) == N_WINDOWS
    return {"model_dir": str(tiny_model_dir), "labels": LABELS, "train": train_windows,
            "val": encode(encoder, val_sentences), "gold": [tags_of(s) for s in val_sentences], "cfg": CFG,
            "seed": SEED, "meta": META}


def run(data, tokenizer, out_dir: Path, calls: list | None = None, windows=None, cfg: TrainConfig = CFG, seed=SEED):
    record = (lambda step, values, timestamp_ms: calls.append([step, dict(values)])) if calls is not None else None
    return train(data["model_dir"], tokenizer, LABELS, windows if windows is not None else data["train"],
                 data["val"], data["gold"], cfg, seed, out_dir, META, on_metrics=record)


@pytest.fixture(scope="module")
def reference(data, tiny_tokenizer, tmp_path_factory):
    """The uninterrupted run every other run must match."""
    out, calls = tmp_path_factory.mktemp("uninterrupted"), []
    result = run(data, tiny_tokenizer, out, calls)
    return {"out": out, "result": result, "calls": calls}


class CrashingWindows(list):
    """Training windows that fail once the first `steps_ok` batches of epoch 1 were fetched: a crash between two
    checkpoints. The batches are the loop's own (nerflow.batching), so the crash falls exactly after a step."""

    def __init__(self, windows, steps_ok: int):
        super().__init__(windows)
        lengths = [len(w.input_ids) for w in windows]
        plan = batching.plan_batches(lengths, CFG.epochs, CFG.batch_tokens, CFG.batch_size, CFG.min_steps)
        self.fetches_left = sum(len(b) for b in batching.epoch_batches(lengths, plan, SEED, 1)[:steps_ok])

    def __getitem__(self, i):
        if self.fetches_left == 0:
            raise RuntimeError("simulated crash")
        self.fetches_left -= 1
        return super().__getitem__(i)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(list_checkpoints(out / "checkpoints")[-1], weights_only=False)["model"]


def assert_same_run(out: Path, result, calls: list, reference) -> None:
    ref = reference["result"]
    assert (result.best_f1, result.best_epoch, result.epochs_run, result.steps, result.history) == \
           (ref.best_f1, ref.best_epoch, ref.epochs_run, ref.steps, ref.history)
    mine, theirs = final_weights(out), final_weights(reference["out"])
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs), "final weights differ from the uninterrupted run"
    best = (out / "best" / "model.safetensors").read_bytes()
    assert best == (reference["out"] / "best" / "model.safetensors").read_bytes()
    assert calls == reference["calls"], "on_metrics points differ from the uninterrupted run (lost or repeated)"


def test_crash_mid_epoch_then_resume_equals_uninterrupted(data, tiny_tokenizer, reference, tmp_path, caplog):
    handler_before = signal.getsignal(signal.SIGTERM)
    calls: list = []
    with pytest.raises(RuntimeError, match="simulated crash"):  # steps 1-8 done: checkpoints 3 and 6, point 8 unflushed
        run(data, tiny_tokenizer, tmp_path, calls, windows=CrashingWindows(data["train"], steps_ok=8))
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert [c[0] for c in calls] == [2, 4, 6]   # only what a checkpoint covers
    # a mid-epoch checkpoint counts the time of the samples it counts: a resume's throughput (progress line,
    # train/samples_per_s) must not divide 6 steps' samples by a time that lacks them
    loop = torch.load(list_checkpoints(tmp_path / "checkpoints")[-1], weights_only=False)["loop"]
    assert loop["step"] == 6 and loop["seen_samples"] > 0 and loop["train_seconds"] > 0, loop
    caplog.set_level(logging.INFO, logger="nerflow")
    result = run(data, tiny_tokenizer, tmp_path, calls)
    assert "resuming from checkpoint step 6 (epoch 1, batch 6)" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert_same_run(tmp_path, result, calls, reference)


def start_child(data, tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    job = {**data, "out_dir": str(tmp_path / "work"), "ready": str(tmp_path / "ready"), "go": str(tmp_path / "go"),
           "calls": str(tmp_path / "calls.jsonl")}
    (tmp_path / "job.pkl").write_bytes(pickle.dumps(job))
    (tmp_path / "child.py").write_text(CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(tmp_path / "job.pkl")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not Path(job["ready"]).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"child never reached its first checkpoint:\n{proc.communicate()[0]}")
        time.sleep(0.02)
    return proc, job


def child_calls(job: dict) -> list:
    path = Path(job["calls"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigkill_after_a_checkpoint_resumes_not_restarts(data, tiny_tokenizer, reference, tmp_path, caplog):
    proc, job = start_child(data, tmp_path)
    assert [p.name for p in list_checkpoints(Path(job["out_dir"]) / "checkpoints")] == ["step-00000003"]
    proc.send_signal(signal.SIGKILL)   # while the points of checkpoint 3 are being handed out
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    calls = child_calls(job)
    assert calls == []
    caplog.set_level(logging.INFO, logger="nerflow")
    result = run(data, tiny_tokenizer, Path(job["out_dir"]), calls)
    assert "resuming from checkpoint step 3 (epoch 1, batch 3)" in caplog.text
    assert_same_run(Path(job["out_dir"]), result, calls, reference)


def test_sigterm_checkpoints_and_raises_training_interrupted(data, tiny_tokenizer, reference, tmp_path, caplog):
    proc, job = start_child(data, tmp_path)
    proc.send_signal(signal.SIGTERM)   # arrives during the flush after checkpoint 3: the step boundary is step 3
    Path(job["go"]).write_text("")
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode not in (0, -signal.SIGTERM), output
    assert "TrainingInterrupted: SIGTERM: stopped at step 3 (epoch 1, batch 3)" in output
    assert (Path(job["out_dir"]) / "checkpoints" / "step-00000003").is_file()
    calls = child_calls(job)
    assert [c[0] for c in calls] == [2]
    caplog.set_level(logging.INFO, logger="nerflow")
    result = run(data, tiny_tokenizer, Path(job["out_dir"]), calls)
    assert "resuming from checkpoint step 3 (epoch 1, batch 3)" in caplog.text
    assert_same_run(Path(job["out_dir"]), result, calls, reference)


def test_corrupt_newest_checkpoint_falls_back_to_previous(data, tiny_tokenizer, reference, tmp_path, caplog):
    calls: list = []
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(data, tiny_tokenizer, tmp_path, calls, windows=CrashingWindows(data["train"], steps_ok=8))
    newest = tmp_path / "checkpoints" / "step-00000006"
    newest.write_bytes(newest.read_bytes()[:1000])   # truncated
    caplog.set_level(logging.INFO, logger="nerflow")
    result = run(data, tiny_tokenizer, tmp_path, calls)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(newest) in w for w in warnings), warnings
    assert "resuming from checkpoint step 3 (epoch 1, batch 3)" in caplog.text
    assert (tmp_path / "checkpoints" / "step-00000006.corrupt").is_file()
    assert_same_run(tmp_path, result, calls, reference)   # points 4 and 6 were delivered before: not again


def test_keeps_newest_checkpoints_and_refuses_another_runs(data, tiny_tokenizer, reference, caplog):
    out = reference["out"] / "checkpoints"
    assert [p.name for p in list_checkpoints(out)] == ["step-00000033", "step-00000036"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics-delivered", "step-00000033", "step-00000036"]
    calls: list = []
    caplog.set_level(logging.INFO, logger="nerflow")
    result = run(data, tiny_tokenizer, reference["out"], calls)   # finished: resumes at the end, trains nothing
    assert "resuming from checkpoint step 36 (epoch 4, batch 0)" in caplog.text
    assert calls == [] and result.steps == 36 and result.history == reference["result"].history
    with pytest.raises(ValueError, match="another training run"):
        run(data, tiny_tokenizer, reference["out"], seed=SEED + 1)


def test_missing_best_model_trains_from_the_start_without_repeating_metrics(data, tiny_tokenizer, reference, tmp_path,
                                                                           caplog):
    out = tmp_path / "work"
    shutil.copytree(reference["out"], out)
    shutil.rmtree(out / "best")   # e.g. moved out by the caller, which then crashed before cleaning up
    calls = list(reference["calls"])   # all delivered by the finished run
    caplog.set_level(logging.INFO, logger="nerflow")
    result = run(data, tiny_tokenizer, out, calls)
    assert "is missing: training from the start" in caplog.text and "resuming" not in caplog.text
    assert_same_run(out, result, calls, reference)


def test_outside_the_main_thread_no_handler_is_installed(data, tiny_tokenizer, tmp_path):
    handler_before, outcome = signal.getsignal(signal.SIGTERM), {}

    def work():
        try:
            outcome["result"] = run(data, tiny_tokenizer, tmp_path, cfg=CFG.model_copy(update={"epochs": 1}))
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome["error"] = e

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].steps == STEPS_PER_EPOCH
    assert signal.getsignal(signal.SIGTERM) is handler_before


def checkpoint_files(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in root.iterdir() if p.name != "metrics-delivered"}


@pytest.mark.parametrize("keep", [1, 2])
def test_disk_use_stays_bounded_over_many_saves_crashes_and_corruptions(keep, tmp_path):
    """`keep_checkpoints` bounds the checkpoints: at most `keep`, no `.tmp` left by a failed write. A torn checkpoint
    set aside stays as `.corrupt` (evidence of a disk fault, never deleted by nerflow) and is not counted."""
    from nerflow.checkpoints import load_newest_checkpoint, recover, save_checkpoint

    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.randn(2, 64)).sum().backward()
    optimizer.step()   # AdamW state exists: a checkpoint is ~3x the weights
    position = {"run": {}, "loop": {"best_epoch": 0}}
    one = save_checkpoint(tmp_path, 0, model, optimizer, scheduler, keep, position).stat().st_size
    assert one > 3 * 64 * 65 * 4   # weights + two AdamW moments, fp32
    for step in range(1, 41):
        save_checkpoint(tmp_path, step, model, optimizer, scheduler, keep, position)
        if step % 10 == 0:   # a torn newest checkpoint, found by the next resume
            newest = list_checkpoints(tmp_path)[-1]
            newest.write_bytes(newest.read_bytes()[:100])
            recover(tmp_path, tmp_path / "best", {})
            assert load_newest_checkpoint(tmp_path) is not None or keep == 1
        if step % 7 == 0:    # a write that fails half-way (disk full): no partial file stays behind
            with pytest.MonkeyPatch.context() as mp:
                def torn_save(state, path):
                    Path(path).write_bytes(b"partial")
                    raise OSError("No space left on device")
                mp.setattr(torch, "save", torn_save)
                with pytest.raises(OSError):
                    save_checkpoint(tmp_path, 1000 + step, model, optimizer, scheduler, keep, position)
        files = checkpoint_files(tmp_path)
        assert len([n for n in files if not n.endswith(".corrupt")]) <= keep, files
        assert len([n for n in files if n.endswith(".corrupt")]) == step // 10, files
        assert not [n for n in files if n.endswith(".tmp")], files
        assert sum(size for n, size in files.items() if not n.endswith(".corrupt")) <= (keep + 1) * one * 1.01, files


def test_checkpoint_cost_is_reported(reference):
    result = reference["result"]
    newest = list_checkpoints(reference["out"] / "checkpoints")[-1]
    assert result.checkpoint_bytes == newest.stat().st_size
    assert result.checkpoint_seconds > 0


def test_lora_crash_mid_epoch_then_resume_equals_uninterrupted(data, tiny_tokenizer, tmp_path):
    """`train.adapter: lora` (adapter dropout on): the peft-wrapped model resumes to the same weights, merged best
    model and adapter as an uninterrupted run."""
    lora = CFG.model_copy(update={"adapter": "lora"})
    calls: list = []
    uninterrupted = run(data, tiny_tokenizer, tmp_path / "ref", [], cfg=lora)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(data, tiny_tokenizer, tmp_path / "resumed", calls, windows=CrashingWindows(data["train"], steps_ok=8),
            cfg=lora)
    result = run(data, tiny_tokenizer, tmp_path / "resumed", calls, cfg=lora)
    assert result.steps == uninterrupted.steps and result.history == uninterrupted.history
    mine, theirs = final_weights(tmp_path / "resumed"), final_weights(tmp_path / "ref")
    assert any("lora_A" in k for k in theirs) and mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs), "final weights differ from the uninterrupted run"
    for saved in ("model.safetensors", "adapter/adapter_model.safetensors"):
        assert (tmp_path / "resumed" / "best" / saved).read_bytes() == (tmp_path / "ref" / "best" / saved).read_bytes()
