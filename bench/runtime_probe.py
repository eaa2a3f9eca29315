"""Which runtime predicts fastest on this CPU, without a trained model: the offline MiniLM with a token-classification
head of CoNLL-2003's 9 tags left at its random initialisation (the forward pass costs the same whatever the
weights), read as the shipped CoNLL config reads (document context, 96 context sub-tokens, windows of 128), served
by each runtime nerflow has, predicting CoNLL-2003 test through `Predictor.predict_text` (batch words/s after load)
and one sentence at a time in-process (p50 ms; no HTTP server: bench/serving_runtimes.py measures that on a trained
model). Answers are not compared: a random head's probabilities are near-uniform, so every runtime's rounding flips
tags. Two rounds, the second in reverse order; each measurement is written to `--out` as it completes and skipped
when already there.

    python bench/runtime_probe.py --data-dir ../shared/data/conll2003 \
        --out bench/results/runtime_probe-zen4-2026-12-06.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def test_texts(data_dir: Path) -> tuple[list[str], int]:
    sentences, current = [], []
    for line in (data_dir / "test.txt").read_text().splitlines():
        word = line.split()[0] if line.strip() else ""
        if not word:
            if current:
                sentences.append(current)
            current = []
        elif word != "-DOCSTART-":
            current.append(word)
    sentences += [current] if current else []
    return [" ".join(s) for s in sentences], sum(map(len, sentences))


def build(work: Path) -> Path:
    """The random-head model folder, and its ONNX fp32 and dynamic int8 files (the export stage's own functions)."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerflow.export import export_onnx, quantize_int8
    from nerflow.models import resolve_model
    from nerflow.ner.predict import write_meta

    folder = work / "model"
    if (work / "model-int8.onnx").is_file():
        return folder
    base = resolve_model("all-MiniLM-L6-v2", work / "cache")
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(
        base, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={t: i for i, t in enumerate(LABELS)})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    write_meta(folder, LABELS, 128, 32, context="document", context_tokens=96)
    export_onnx(model.eval(), work / "model.onnx", sequence_output=True)
    quantize_int8(work / "model.onnx", work / "model-int8.onnx")
    return folder


def load(runtime: str, folder: Path, work: Path):
    import torch
    from transformers import AutoModelForTokenClassification

    from nerflow.runtimes import OnnxModel

    if runtime.startswith("torch"):
        model = AutoModelForTokenClassification.from_pretrained(folder).eval()
        return model.to(torch.bfloat16) if runtime == "torch-bf16" else model
    return OnnxModel(work / ("model-int8.onnx" if runtime == "onnx-int8" else "model.onnx"), len(LABELS))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=BENCH / "out" / "runtime_probe")
    ap.add_argument("--runtimes", nargs="+", default=["torch", "torch-bf16", "onnx", "onnx-int8"])
    ap.add_argument("--latency-texts", type=int, default=100)
    args = ap.parse_args(argv)
    from nerflow.ner.predict import Predictor
    from nerflow.runtimes import native_bf16

    texts, words = test_texts(args.data_dir)
    folder = build(args.work)
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
    done = json.loads(args.out.read_text()) if args.out.is_file() else {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), platform.processor()),
        "flags": sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_vnni", "avx_vnni"))),
        "native_bf16": native_bf16(), "texts": len(texts), "words": words, "rows": {}}
    for round_ in (1, 2):
        for runtime in args.runtimes if round_ == 1 else args.runtimes[::-1]:
            key = f"{runtime} round {round_}"
            if key in done["rows"]:
                continue
            predictor = Predictor.load(folder, device="cpu", model=load(runtime, folder, args.work))
            predictor.predict_text(texts[:64])                       # warm-up
            started = time.perf_counter()
            predictor.predict_text(texts)
            seconds = time.perf_counter() - started
            for text in texts[:3]:
                predictor.predict_text([text])
            times = []
            for text in texts[100:100 + args.latency_texts]:
                started = time.perf_counter()
                predictor.predict_text([text])
                times.append((time.perf_counter() - started) * 1000)
            done["rows"][key] = {"words_per_s": round(words / seconds), "p50_ms": round(statistics.median(times), 2)}
            args.out.write_text(json.dumps(done, indent=1) + "\n")
            print(key, done["rows"][key], flush=True)


if __name__ == "__main__":
    main()
