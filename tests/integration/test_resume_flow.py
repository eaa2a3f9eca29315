"""Acceptance test of resumable training through the whole pipeline: `nerflow run` in a subprocess is killed with
SIGKILL mid-epoch, right after a mid-epoch checkpoint; the same run started again resumes from that checkpoint
(not from the start), ends with exactly the parameters of an uninterrupted run, and leaves in its one MLflow run
the same metric history, step for step, with no point lost or repeated."""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient
from safetensors.torch import load_file

from nerflow.config import load_config, resolved_dict
from nerflow.ner.tokenization import Encoder
from nerflow.plan import make_plan

from .corpus import LONG, SHORT, tiny_config, write_conll

REPEATS = 20                     # ([LONG] + SHORT) * 20: 140 windows of max_length 16, 35 steps per epoch
BATCH, CHECKPOINT_EVERY, EPOCHS, LOG_EVERY = 4, 10, 4, 2
TRAIN = [f"train.epochs={EPOCHS}", f"train.batch_size={BATCH}", f"train.checkpoint_every={CHECKPOINT_EVERY}",
         f"train.log_every={LOG_EVERY}", "train.num_threads=1", "train.device=cpu", "train.precision=fp32"]
STEP_METRICS = ("train/loss", "train/lr", "val/f1", "val/precision", "val/recall", "train/epoch")   # docs/metrics.md
RESUMED = re.compile(r"resuming from checkpoint step (\d+) \(epoch (\d+), batch (\d+)\)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_corpus) -> Path:
    """The tiny corpus with a longer train split: an epoch long enough to be killed in the middle of."""
    d = tmp_path_factory.mktemp("resume-corpus")
    write_conll(d / "train.txt", ([LONG] + SHORT) * REPEATS)
    for name in ("valid.txt", "test.txt"):
        (d / name).write_bytes((tiny_corpus / name).read_bytes())
    return d


@pytest.fixture(scope="module")
def steps_per_epoch(corpus_tokenizer) -> int:
    encoder = Encoder(corpus_tokenizer, 16, 4)
    windows = sum(len(encoder.encode(i, [w for w, _ in s], None)) for i, s in enumerate(([LONG] + SHORT) * REPEATS))
    steps = math.ceil(windows / BATCH)
    assert steps % CHECKPOINT_EVERY, "some checkpoints must fall mid-epoch"
    return steps


def config(tmp_path: Path, corpus: Path, model_dir: Path, name: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return tiny_config(tmp_path, corpus, model_dir, tmp_path / "cache", f"experiment=nerflow-{name}",
                       f"registry.model_name={name}", *TRAIN)


@contextlib.contextmanager
def final_weights_of_training(into: list):
    """Keeps the weights after the last training step: the newest checkpoint when `train` returns (the stage
    deletes the checkpoints afterwards and keeps only the best epoch's model)."""
    from nerflow.checkpoints import list_checkpoints
    from nerflow.ner import training as train_module

    original = train_module.train_job

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        out_dir = Path(inspect.signature(original).bind(*args, **kwargs).arguments["job"]["out_dir"])
        newest = list_checkpoints(out_dir / "checkpoints")[-1]
        into.append((newest.name, torch.load(newest, map_location="cpu", weights_only=False)["model"]))
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "train_job", spy)
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, corpus_model_dir, mlflow_store):
    """The uninterrupted run: its own cache, experiment and model name; the same training."""
    from nerflow.flows.pipeline import pipeline

    cfg, final = config(tmp_path_factory.mktemp("resume-reference"), corpus, corpus_model_dir, "resume-ref"), []
    with final_weights_of_training(final):
        result = pipeline(cfg)
    assert not result.stages["train"]
    return cfg, result, final


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def start_pipeline(cfg_path: Path, cwd: Path, mlflow_store: str) -> tuple[subprocess.Popen, Path]:
    """`nerflow run CFG` in its own process group (SIGKILL then reaches everything it started), against this
    session's MLflow store and Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_path = cwd / "nerflow-run.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "nerflow.flows.cli", "run", str(cfg_path)], cwd=cwd, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log_path


def points_covered(step: int, steps_per_epoch: int) -> int:
    """Metric points emitted up to `step`: a train/loss+lr point every LOG_EVERY steps, a validation point per epoch."""
    return step // LOG_EVERY + step // steps_per_epoch


def kill_after_mid_epoch_checkpoint(proc: subprocess.Popen, log_path: Path, cache: Path, steps_per_epoch: int) -> int:
    """Polls the training checkpoints; SIGKILLs the process group as soon as the newest one is mid-epoch and the
    points it covers reached MLflow (its flush is over: the kill lands among training steps, not inside the flush).
    Returns the step of that checkpoint."""
    deadline, killed_at = time.monotonic() + 180, None
    try:
        while killed_at is None:
            for work in cache.glob("train/*.work/checkpoints"):
                steps = [int(p.name[5:]) for p in work.glob("step-*") if p.name[5:].isdigit()]
                newest = max(steps, default=0)
                with contextlib.suppress(OSError, ValueError):
                    delivered = int((work / "metrics-delivered").read_text())
                    if newest % steps_per_epoch and delivered == points_covered(newest, steps_per_epoch):
                        os.killpg(proc.pid, signal.SIGKILL)
                        killed_at = newest
            if killed_at is None and (proc.poll() is not None or time.monotonic() > deadline):
                pytest.fail(f"no mid-epoch checkpoint caught (exit code {proc.poll()}):\n"
                            + log_path.read_text()[-5000:])
            time.sleep(0.002)
    finally:
        if proc.poll() is None and killed_at is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, log_path.read_text()[-5000:]
    return killed_at


def test_sigkill_mid_epoch_then_rerun_resumes_and_equals_the_uninterrupted_run(
        reference, corpus, corpus_model_dir, steps_per_epoch, mlflow_store, tmp_path, caplog):
    from nerflow.flows.pipeline import pipeline

    ref_cfg, ref, ref_final = reference
    cfg_path = tmp_path / "pipeline.yaml"
    cfg_path.write_text(yaml.safe_dump(resolved_dict(config(tmp_path / "cfg", corpus, corpus_model_dir,
                                                            "resume-killed"))))
    cfg = load_config(cfg_path)
    ref_plan, plan = make_plan(ref_cfg), make_plan(cfg)   # as the flow
    assert plan.stages["train"].key == ref_plan.stages["train"].key      # the same training ...
    assert plan.logical_run != ref_plan.logical_run                       # ... in another MLflow run

    proc, log_path = start_pipeline(cfg_path, tmp_path, mlflow_store)
    checkpointed = kill_after_mid_epoch_checkpoint(proc, log_path, Path(cfg.cache_dir), steps_per_epoch)

    client = MlflowClient()
    (killed,) = client.search_runs([client.get_experiment_by_name(cfg.experiment).experiment_id])
    run_id = killed.info.run_id
    assert killed.info.status == "RUNNING"                  # SIGKILL: nothing got to mark it
    assert killed.data.tags["nerflow.logical_run"] == plan.logical_run
    assert killed.data.tags["nerflow.attempts"] == "1"
    delivered = {key: metric_history(client, run_id, key) for key in STEP_METRICS}
    assert len(delivered["train/loss"]) >= checkpointed // LOG_EVERY   # what the checkpoint covers reached MLflow

    final = []
    caplog.set_level(logging.INFO, logger="nerflow")
    with final_weights_of_training(final):
        result = pipeline(cfg)                           # the same run again, in this process

    (resumed,) = RESUMED.findall(caplog.text)               # resumed, not restarted
    step, epoch, batch = map(int, resumed)
    assert step >= checkpointed and step % steps_per_epoch == batch > 0, resumed
    assert epoch == step // steps_per_epoch + 1, resumed
    assert f"{steps_per_epoch} steps/epoch" in caplog.text

    run = client.get_run(run_id)
    assert result.run_id == run_id                        # the logical run continued its MLflow run
    assert run.data.tags["nerflow.attempts"] == "2"
    assert run.info.status == "FINISHED"
    assert result["evaluate"].metrics == ref["evaluate"].metrics

    # every parameter after the last step, and the model the pipeline keeps (the best epoch's), equal the reference's
    ((name, weights),), ((ref_name, ref_weights),) = final, ref_final
    assert name == ref_name == f"step-{EPOCHS * steps_per_epoch:08d}"
    assert weights.keys() == ref_weights.keys()
    assert [k for k in ref_weights if not torch.equal(weights[k], ref_weights[k])] == []
    model = load_file(plan.stages["train"].path / "model" / "model.safetensors")
    ref_model = load_file(ref_plan.stages["train"].path / "model" / "model.safetensors")
    assert model.keys() == ref_model.keys()
    assert [k for k in ref_model if not torch.equal(model[k], ref_model[k])] == []

    # the metric history, step for step: nothing lost, nothing logged twice
    for key in STEP_METRICS:
        history, ref_history = metric_history(client, run_id, key), metric_history(client, ref.run_id, key)
        assert len(ref_history) == len({s for s, _ in ref_history}) > 0, key
        assert history == ref_history, key
        assert history[:len(delivered[key])] == delivered[key], key     # the points from before the kill stayed
