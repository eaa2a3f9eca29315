"""Which runtime predicts fastest on this CPU, without a trained model: the offline MiniLM with a head left at its
random initialisation (the forward pass costs the same whatever the weights), read as a shipped config reads, served
by each runtime nerflow has. `--task token-classification` (default): CoNLL-2003's 9 tags, document context with
96 context sub-tokens, windows of 128 (configs/conll2003.yaml), predicting CoNLL-2003 test through
`Predictor.predict_text` (batch words/s after load) and one sentence at a time in-process (p50 ms; no HTTP server:
bench/serving_runtimes.py measures that on a trained model). `--task text-classification`: 2 labels, windows of 256
(configs/movie_reviews.yaml), the first 100 reviews of each polarity (reviews/s; p50 of one review). Answers are
not compared: a random head's probabilities are near-uniform, so every runtime's rounding flips them. Two rounds,
the second in reverse order; each measurement is written to `--out` as it completes and skipped when already there.

    python bench/runtime_probe.py --data-dir ../shared/data/conll2003 \
        --out bench/results/runtime_probe-zen4-2026-12-06.json
    python bench/runtime_probe.py --task text-classification --data-dir ../shared/data/movie_reviews \
        --out bench/results/runtime_probe-movies-zen4-2026-12-06.json
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


def review_texts(data_dir: Path, per_label: int = 100) -> tuple[list[str], int]:
    texts = [f.read_text(errors="replace") for label in ("pos", "neg")
             for f in sorted((data_dir / label).glob("*.txt"))[:per_label]]
    return texts, len(texts)


def auto_class(task: str):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForTokenClassification if task == "token-classification" else AutoModelForSequenceClassification


def build(work: Path, task: str) -> Path:
    """The random-head model folder, and its ONNX fp32 and dynamic int8 files (the export stage's own functions)."""
    import torch
    from transformers import AutoTokenizer

    from nerflow.export import export_onnx, quantize_int8
    from nerflow.models import resolve_model

    folder = work / "model"
    if (work / "model-int8.onnx").is_file():
        return folder
    labels = LABELS if task == "token-classification" else ["neg", "pos"]
    base = resolve_model("all-MiniLM-L6-v2", work.parent / "cache")
    torch.manual_seed(0)
    model = auto_class(task).from_pretrained(base, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                             label2id={t: i for i, t in enumerate(labels)})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    if task == "token-classification":
        from nerflow.ner.predict import write_meta

        write_meta(folder, labels, 128, 32, context="document", context_tokens=96)
    else:
        from nerflow.textcat.predict import write_meta

        write_meta(folder, labels=labels, multi_label=False, max_length=256, stride=32, long_documents="windows",
                   head_share=0.25, pool="mean")
    export_onnx(model.eval(), work / "model.onnx", sequence_output=task == "token-classification")
    quantize_int8(work / "model.onnx", work / "model-int8.onnx")
    return folder


def load(runtime: str, folder: Path, work: Path, task: str):
    import torch

    from nerflow.runtimes import OnnxModel

    if runtime.startswith("torch"):
        model = auto_class(task).from_pretrained(folder).eval()
        return model.to(torch.bfloat16) if runtime == "torch-bf16" else model
    labels = len(LABELS) if task == "token-classification" else 2
    return OnnxModel(work / ("model-int8.onnx" if runtime == "onnx-int8" else "model.onnx"), labels)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["token-classification", "text-classification"], default="token-classification")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=BENCH / "out" / "runtime_probe")
    ap.add_argument("--runtimes", nargs="+", default=["torch", "torch-bf16", "onnx", "onnx-int8"])
    ap.add_argument("--latency-texts", type=int, default=0, help="default: 100 sentences, or 50 reviews")
    args = ap.parse_args(argv)
    from nerflow.ner.predict import Predictor
    from nerflow.runtimes import native_bf16
    from nerflow.textcat.predict import Classifier

    ner = args.task == "token-classification"
    texts, units = test_texts(args.data_dir) if ner else review_texts(args.data_dir)
    latency_texts = args.latency_texts or (100 if ner else 50)
    work = args.work / args.task
    folder = build(work, args.task)
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
    done = json.loads(args.out.read_text()) if args.out.is_file() else {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), platform.processor()),
        "flags": sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_vnni", "avx_vnni"))),
        "native_bf16": native_bf16(), "task": args.task, "texts": len(texts), "unit": "words" if ner else "texts",
        "units": units, "rows": {}}
    for round_ in (1, 2):
        for runtime in args.runtimes if round_ == 1 else args.runtimes[::-1]:
            key = f"{runtime} round {round_}"
            if key in done["rows"]:
                continue
            predictor = (Predictor if ner else Classifier).load(folder, device="cpu",
                                                                model=load(runtime, folder, work, args.task))
            predictor.predict_text(texts[:64 if ner else 4])         # warm-up
            started = time.perf_counter()
            predictor.predict_text(texts)
            seconds = time.perf_counter() - started
            for text in texts[:3]:
                predictor.predict_text([text])
            times = []
            for text in texts[100:100 + latency_texts]:
                started = time.perf_counter()
                predictor.predict_text([text])
                times.append((time.perf_counter() - started) * 1000)
            done["rows"][key] = {f"{done['unit']}_per_s": round(units / seconds, 1 if not ner else None),
                                 "p50_ms": round(statistics.median(times), 2)}
            args.out.write_text(json.dumps(done, indent=1) + "\n")
            print(key, done["rows"][key], flush=True)


if __name__ == "__main__":
    main()
