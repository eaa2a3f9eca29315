"""nerflow's train stage against the Hugging Face Trainer recipe, back to back: same model, data, epochs and seed.

One job at a time, each in a fresh process (two torch jobs on 2 cores thrash each other), timed by the same clock
(`time.perf_counter`) over the same span: the training steps (nerflow: its loop's step time, validation passes and
checkpoint writes excluded; the recipe: `trainer.train()` from its first to its last step; it validates nothing).
Per job it prints and writes train samples/s, real (unpadded) tokens/s, the padding ratio, the wall time of the
whole train stage (model load, training, nerflow's per-epoch validation and checkpoints), peak memory, test F1
(seqeval strict IOB2, every gold word) and model FLOPs utilisation (6 x non-embedding parameters x real tokens /
time / peak, against a measured matmul peak: fp32 on CPU, bf16 on a GPU, plus the datasheet's on known GPUs).

Needs torch + transformers + seqeval + pydantic/pyyaml only (no MLflow, Prefect or GX), so it also runs on a GPU
machine that has nothing else (docs/benchmarks.md, "GPU").

    python bench/train_speed.py --data-dir ../shared/data/conll2003 --seeds 42 7 --out bench/out/train_speed.json
    python bench/compare_speed.py bench/out/train_speed.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]
from paths import portable  # noqa: E402

# Dense bf16 tensor-core peaks from the datasheets (TFLOP/s, without sparsity).
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def measured_peak_tflops(device: str) -> tuple[float, str]:
    """The best of a few large matmuls: fp32 on CPU, bf16 on CUDA."""
    import torch

    n, dtype = (8192, torch.bfloat16) if device.startswith("cuda") else (2048, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / 4)
    return 2 * n ** 3 / best / 1e12, f"measured {str(dtype).removeprefix('torch.')} matmul {n}x{n}"


def non_embedding_params(model) -> int:
    embeddings = getattr(model.base_model, "embeddings", None)
    skip = sum(p.numel() for p in embeddings.parameters()) if embeddings is not None else 0
    return model.num_parameters() - skip


def load_data(args):
    from nerflow.ner.data import label_list, read_conll

    splits = {n: read_conll(args.data_dir / f) for n, f in
              [("train", "train.txt"), ("validation", "valid.txt"), ("test", "test.txt")]}
    if args.limit_train:
        splits["train"] = splits["train"][: args.limit_train]
    return splits, label_list(splits)


def model_path(args) -> str:
    if args.model.startswith("random:"):
        return args.model
    from nerflow.models import resolve_model

    return resolve_model(args.model, ROOT / ".cache" / "nerflow")


def random_model(spec: str, labels: list[str]):
    """`random:bert-base` (or `random:H,L`): a randomly initialised BERT of that size, for speed only."""
    from transformers import BertConfig, BertForTokenClassification

    size = spec.removeprefix("random:")
    hidden, layers = (768, 12) if size == "bert-base" else map(int, size.split(","))
    config = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                        intermediate_size=4 * hidden, num_labels=len(labels), vocab_size=30522)
    return BertForTokenClassification(config)


def run_nerflow(args, seed: int, overrides: list[str], device: str) -> dict:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerflow import distributed
    from nerflow.config import load_config
    from nerflow.devices import select_device
    from nerflow.ner.evaluate import score
    from nerflow.ner.predict import predict_windows
    from nerflow.ner.tokenization import encode_split, encoder_for
    from nerflow.ner.training import trainable
    from nerflow.train import fit

    # the documented command's settings, as the pipeline resolves them
    cfg = load_config(ROOT / "configs" / "conll2003.yaml",
                      [f"train.device={device}", f"train.epochs={args.epochs}", *overrides])
    splits, labels = load_data(args)
    path = model_path(args)
    tok_path = model_path(argparse.Namespace(model=args.tokenizer)) if path.startswith("random:") else path
    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    encoder = encoder_for(tokenizer, cfg.tokenize)
    windows = {s: encode_split(encoder, splits[s], labels) for s in splits}
    meta = {"labels": labels, "max_length": cfg.tokenize.max_length, "stride": cfg.tokenize.stride}
    out = args.work / f"nerflow-{seed}"
    shutil.rmtree(out, ignore_errors=True)
    job = trainable(tok_path, tokenizer, labels, windows["train"], windows["validation"],
                    [s.tags for s in splits["validation"]], cfg.train, meta)
    if path.startswith("random:"):
        job = dataclasses.replace(job, load_model=lambda: random_model(path, labels))
    started = time.perf_counter()
    result = fit(job, cfg.train, seed, out)
    stage_wall = time.perf_counter() - started
    model = AutoModelForTokenClassification.from_pretrained(result.best_dir)
    dev, dtype = select_device(cfg.train, distributed.World())
    tags, _ = predict_windows(model.to(dev), windows["test"], [len(s.tokens) for s in splits["test"]],
                              dict(enumerate(labels)), tokenizer.pad_token_id or 0, 256, dev, dtype,
                              batch_tokens=cfg.train.eval_batch_tokens)
    test_f1 = score([s.tags for s in splits["test"]], tags).f1
    real_tokens = sum(job.lengths) * result.epochs_run
    return {"samples_per_s": result.train_samples_per_s, "tokens_per_s": result.train_tokens_per_s,
            "padding_ratio": result.padding_ratio, "train_seconds": result.train_seconds,
            "stage_wall_seconds": stage_wall, "test_f1": test_f1, "val_f1": result.best_score,
            "epochs": result.epochs_run, "steps": result.steps, "lr": result.lr, "batches": result.batches,
            "checkpoint_seconds": result.checkpoint_seconds,
            "checkpoint_share": result.checkpoint_seconds / max(result.train_seconds, 1e-9),
            "real_tokens": real_tokens, "non_embedding_params": non_embedding_params(model),
            "peak_memory_bytes": peak_memory(dev), "settings": cfg.train.model_dump(mode="json")}


def run_recipe(args, seed: int, device: str) -> dict:
    import torch
    from hf_trainer_recipe import encode, word_predictions
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    splits, labels = load_data(args)
    label_to_id = {t: i for i, t in enumerate(labels)}
    path = model_path(args)
    tok_path = model_path(argparse.Namespace(model=args.tokenizer)) if path.startswith("random:") else path
    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    started = time.perf_counter()
    model = random_model(path, labels) if path.startswith("random:") else \
        AutoModelForTokenClassification.from_pretrained(path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                                        label2id=label_to_id, dtype=torch.float32)
    train = encode(tokenizer, splits["train"], label_to_id)
    test = encode(tokenizer, splits["test"], label_to_id)
    collator = DataCollatorForTokenClassification(tokenizer)
    counts = {"real": 0, "padded": 0}

    def counting_collator(features):   # the padding the recipe's random batches of 8 carry
        batch = collator(features)
        counts["real"] += int(batch["attention_mask"].sum())
        counts["padded"] += batch["input_ids"].numel()
        return batch

    span = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            span["start"] = time.perf_counter()

        def on_train_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            span["end"] = time.perf_counter()

    targs = TrainingArguments(output_dir=str(args.work / f"recipe-{seed}"), learning_rate=5e-5,
                              per_device_train_batch_size=8, per_device_eval_batch_size=8,
                              num_train_epochs=args.epochs, seed=seed, save_strategy="no", logging_steps=200,
                              report_to=[], use_cpu=device == "cpu", disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train, processing_class=tokenizer,
                      data_collator=counting_collator, callbacks=[Clock()])
    trainer.train()
    stage_wall = time.perf_counter() - started
    train_seconds = span["end"] - span["start"]
    real_train = dict(counts)
    logits = trainer.predict(test).predictions
    preds = word_predictions(logits, test, splits["test"], labels)
    f1 = f1_score([s.tags for s in splits["test"]], preds, mode="strict", scheme=IOB2)
    samples = len(train) * args.epochs
    return {"samples_per_s": samples / train_seconds, "tokens_per_s": real_train["real"] / train_seconds,
            "padding_ratio": real_train["padded"] / max(real_train["real"], 1), "train_seconds": train_seconds,
            "stage_wall_seconds": stage_wall, "test_f1": float(f1), "epochs": args.epochs,
            "steps": trainer.state.global_step, "lr": 5e-5, "batches": "8 sequences per step (random)",
            "real_tokens": real_train["real"], "non_embedding_params": non_embedding_params(model),
            "peak_memory_bytes": peak_memory("cuda" if device != "cpu" else "cpu")}


def peak_memory(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def one_job(args) -> None:
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    system, seed = args.one[0], int(args.one[1])
    overrides = system.split(":", 1)[1].split(",") if ":" in system else []
    row = run_recipe(args, seed, device) if system == "recipe" else run_nerflow(args, seed, overrides, device)
    peak, peak_name = measured_peak_tflops("cuda:0" if device.startswith("cuda") else "cpu")
    flops = 6 * row["non_embedding_params"] * row["real_tokens"]
    row.update(system=system, seed=seed, device=device_name(device), mfu=flops / row["train_seconds"] / (peak * 1e12),
               peak_tflops=peak, peak=peak_name, torch=torch.__version__,
               threads=torch.get_num_threads(), date=time.strftime("%Y-%m-%d %H:%M"))
    gpu = device_name(device)
    for name, tflops in DATASHEET_BF16_TFLOPS.items():
        if device.startswith("cuda") and name in gpu:
            row.update(mfu_datasheet=flops / row["train_seconds"] / (tflops * 1e12),
                       datasheet_peak=f"{name} dense bf16 {tflops:g} TFLOP/s")
            break
    print("RESULT " + json.dumps(row), flush=True)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="a model folder, the offline MiniLM, or "
                    "random:bert-base (random init, for speed only)")
    ap.add_argument("--tokenizer", default="all-MiniLM-L6-v2", help="the tokenizer of a random:... model")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--systems", nargs="+", default=["recipe", "nerflow"],
                    help="recipe, nerflow, or nerflow:key=value,key=value (nerflow with overrides)")
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "train-speed-work")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "train_speed.json")
    ap.add_argument("--append", action="store_true", help="add to the rows already in --out")
    ap.add_argument("--one", nargs=2, metavar=("SYSTEM", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.one:
        return one_job(args)
    rows = json.loads(args.out.read_text())["rows"] if args.out.is_file() and args.append else []
    for seed in args.seeds:
        for system in args.systems:   # one job at a time, each in a fresh process
            cmd = [sys.executable, __file__, "--one", system, str(seed)] + forwarded(args)
            print(f"--- {system} seed {seed}", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.exit(f"{system} seed {seed} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            rows.append(json.loads(lines[-1].removeprefix("RESULT ")))
            print(summary_line(rows[-1]), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"command": " ".join(map(portable, sys.argv)), "rows": rows}, indent=1))
    print(f"written {args.out}; compare: python bench/compare_speed.py {args.out}")


def forwarded(args) -> list[str]:
    out = ["--data-dir", str(args.data_dir), "--model", args.model, "--tokenizer", args.tokenizer, "--epochs",
           str(args.epochs), "--device", args.device, "--work", str(args.work)]
    return out + (["--limit-train", str(args.limit_train)] if args.limit_train else [])


def summary_line(r: dict) -> str:
    return (f"{r['system']:<28} seed {r['seed']:>3}: {r['samples_per_s']:7.1f} samples/s {r['tokens_per_s']:7.0f} "
            f"tokens/s  padding {r['padding_ratio']:.2f}x  train {r['train_seconds']:7.0f} s  stage "
            f"{r['stage_wall_seconds']:7.0f} s  peak {r['peak_memory_bytes'] / 2**30:.1f} GiB  test F1 "
            f"{r['test_f1']:.4f}  MFU {100 * r['mfu']:.1f}% of {r['peak_tflops']:.2f} TFLOP/s ({r['peak']})")


if __name__ == "__main__":
    main()
