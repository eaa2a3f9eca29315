"""How far ONNX int8 is from the issue-25 target of 3x PyTorch fp32's batch words/s on CoNLL-2003, and what a
smaller encoder would give: `nerflow predict`'s code (`Predictor.predict_text`, after load) on the 3,453 CoNLL-2003
test sentences with the offline MiniLM and CoNLL's 9-tag head at its random initialisation (throughput does not
depend on the weights; bench/runtime_probe.py has the same set-up), served by
- PyTorch fp32 (the baseline) and ONNX int8 as the export stage makes it (attention exported as transformers runs it,
  `sdpa`);
- ONNX int8 exported with `attn_implementation="eager"` (no IsNaN/Where masking nodes: ~17% of int8's operator time
  at 32 windows of 128 positions in onnxruntime's profile);
- ONNX int8 of the encoder cut to 4 and to 3 of its 6 layers (layers 0,2,3,5 and 0,2,5): the speed a distilled
  student would have. What such a student loses in F1 is measured apart, by training it (docs/benchmarks.md).
Two rounds, the second in reverse order; each measurement is written to `--out` as it completes and skipped when
already there.

    python bench/int8_headroom.py --data-dir ../shared/data/conll2003 \
        --out bench/results/int8_headroom-zen4-2026-12-06.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

from runtime_probe import BENCH, build, test_texts

VARIANTS = ["torch", "onnx-int8", "onnx-int8-eager", "onnx-int8-4-layers", "onnx-int8-3-layers"]


def export_variant(folder: Path, work: Path, variant: str) -> Path:
    """The int8 file of `variant` (built once), by the export stage's own functions."""
    import torch
    from transformers import AutoModelForTokenClassification

    from nerflow.export import export_onnx, quantize_int8

    int8 = work / variant / "model-int8.onnx"
    if int8.is_file():
        return int8
    eager = variant != "onnx-int8"      # the cut models are eager too: their masking is not what is measured
    model = AutoModelForTokenClassification.from_pretrained(folder, **({"attn_implementation": "eager"} if eager
                                                                       else {})).eval()
    if variant.endswith("-layers"):
        n = int(variant.split("-")[2])
        keep = [round(i * 5 / (n - 1)) for i in range(n)]
        model.bert.encoder.layer = torch.nn.ModuleList(model.bert.encoder.layer[i] for i in keep)
        model.config.num_hidden_layers = n
    export_onnx(model, work / variant / "model.onnx", sequence_output=True)
    quantize_int8(work / variant / "model.onnx", int8)
    return int8


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=BENCH / "out" / "int8_headroom")
    args = ap.parse_args(argv)
    from transformers import AutoModelForTokenClassification

    from nerflow.ner.predict import Predictor
    from nerflow.runtimes import OnnxModel

    texts, words = test_texts(args.data_dir)
    folder = build(args.work / "token-classification", "token-classification")
    files = {v: export_variant(folder, args.work, v) for v in VARIANTS if v != "torch"}
    done = json.loads(args.out.read_text()) if args.out.is_file() else {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), platform.processor()),
        "texts": len(texts), "words": words, "rows": {}}
    for round_ in (1, 2):
        for variant in VARIANTS if round_ == 1 else VARIANTS[::-1]:
            key = f"{variant} round {round_}"
            if key in done["rows"]:
                continue
            model = (AutoModelForTokenClassification.from_pretrained(folder).eval() if variant == "torch"
                     else OnnxModel(files[variant], 9))
            predictor = Predictor.load(folder, device="cpu", model=model)
            predictor.predict_text(texts[:64])             # warm-up
            started = time.perf_counter()
            predictor.predict_text(texts)
            done["rows"][key] = {"words_per_s": round(words / (time.perf_counter() - started))}
            args.out.write_text(json.dumps(done, indent=1) + "\n")
            print(key, done["rows"][key], flush=True)


if __name__ == "__main__":
    main()
