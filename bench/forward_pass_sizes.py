"""Forward-pass speed of a sequence classifier by pass size, fp32 against bf16 weights (the probe behind
nerflow.batching.CPU_PREDICT_TOKENS; docs/benchmarks.md, "Prediction's passes sized by tokens"): random token ids,
every sequence full length, best of two passes over the same sequences, 2 threads unless --threads.

    python bench/forward_pass_sizes.py --model .cache/nerflow/models/all-MiniLM-L6-v2
"""
from __future__ import annotations

import argparse
import time

import torch

SHAPES = ((256, (2, 4, 8, 16, 32, 64), 128), (32, (16, 32, 64, 128, 256, 512), 1024))   # (length, passes, total)


def per_second(model, ids: torch.Tensor, size: int) -> float:
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        model(input_ids=ids[:size], attention_mask=mask[:size])   # warm-up
        started = time.perf_counter()
        for b in range(0, len(ids), size):
            model(input_ids=ids[b:b + size], attention_mask=mask[b:b + size]).logits.float()
        return len(ids) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a Hugging Face model folder (the base MiniLM will do)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(args.threads)
    fp32 = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    bf16 = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2).eval().to(torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    for length, sizes, total in SHAPES:
        ids = torch.randint(1000, 20000, (total, length), generator=generator)
        for size in sizes:
            models = {"fp32": fp32, "bf16": bf16}
            rate = {name: max(per_second(m, ids, size) for _ in range(2)) for name, m in models.items()}
            print(f"length {length} x {size} a pass ({length * size} positions): fp32 {rate['fp32']:.1f}, bf16 "
                  f"{rate['bf16']:.1f} sequences/s, ratio {rate['bf16'] / rate['fp32']:.2f}", flush=True)


if __name__ == "__main__":
    main()
