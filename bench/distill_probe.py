"""Would a smaller encoder keep CoNLL-2003 F1? The probe behind issue 25's open target (3x PyTorch fp32's batch
words/s; bench/int8_headroom.py measures that an int8 MiniLM cut to 4 layers runs ~2.9x and to 3 layers ~3.3x).

`cut N --to DIR`: the offline MiniLM with N of its 6 layers (evenly spread: 0,2,3,5 for 4; 0,2,5 for 3), for a
plain fine-tune through the pipeline:

    python bench/distill_probe.py cut 4 --to bench/out/distill/minilm-L4
    python bench/conll_context.py --out bench/out/distill/rows.jsonl --work bench/out/distill/runs \
        --contexts sentence --seeds 42 -- export.enabled=false model.name_or_path=bench/out/distill/minilm-L4

`distill N --teacher-run RUN`: a student of N layers taken from a fine-tuned teacher (the same layers, its head
kept) and trained by nerflow's own loop (nerflow.train.fit: the config's batches, schedule, validation F1 each
epoch, best epoch kept) on the teacher's training windows, against the gold tags and the teacher's tag
distribution at temperature T (loss alpha * cross-entropy + (1 - alpha) * T^2 * KL). RUN is the `nerflow-run`
folder of a finished pipeline run (its cache holds the teacher, the windows and the validated splits):

    python bench/conll_context.py --out bench/out/distill/rows.jsonl --work bench/out/distill/runs \
        --contexts sentence --seeds 42 -- export.enabled=false
    python bench/distill_probe.py distill 4 \
        --teacher-run "bench/out/distill/runs/sentence-seed42-export.enabled=false/nerflow-run" \
        --out bench/results/distill_probe-zen4-2026-12-06.jsonl

A row is appended to `--out` when its training ends and skipped when already there; an interrupted student resumes
from its checkpoints. Validation F1 only: this probe chooses nothing, so test stays unread.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def kept_layers(n: int, of: int = 6) -> list[int]:
    return [round(i * (of - 1) / (n - 1)) for i in range(n)] if n > 1 else [of - 1]


def cut(model, n: int):
    """`model` (a BERT-family transformers model) with `n` of its encoder layers."""
    import torch

    encoder = model.base_model.encoder
    encoder.layer = torch.nn.ModuleList(encoder.layer[i] for i in kept_layers(n, len(encoder.layer)))
    model.config.num_hidden_layers = n
    return model


def cut_base(n: int, to: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    from nerflow.models import resolve_model

    base = resolve_model("all-MiniLM-L6-v2", to.parent / "cache")
    cut(AutoModel.from_pretrained(base), n).save_pretrained(to)
    AutoTokenizer.from_pretrained(base).save_pretrained(to)


def distill(n: int, run: Path, temperature: float, alpha: float, lr: float, epochs: int, seed: int, work: Path
            ) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerflow.config import load_config
    from nerflow.ner.data import read_split
    from nerflow.ner.tokenization import IGNORE, load_windows
    from nerflow.ner.training import trainable
    from nerflow.train import fit

    def generation(stage: str, inside: str = "") -> Path:
        return next(p for p in sorted((run / "cache" / stage / ".generations").glob(f"*/{inside}")) if p.is_dir())

    teacher_dir, windows, validated = generation("train", "model"), generation("tokenize"), generation("validate")
    teacher = AutoModelForTokenClassification.from_pretrained(teacher_dir).eval()
    teacher.requires_grad_(False)
    labels = json.loads((validated / "labels.json").read_text())
    meta = json.loads((teacher_dir / "nerflow.json").read_text())
    cfg = load_config(BENCH.parent / "configs" / "conll2003.yaml",
                      [f"tokenize.context={meta['context']}", f"train.lr={lr}", f"train.epochs={epochs}",
                       "train.freeze=none"]).train
    job = trainable(str(teacher_dir), AutoTokenizer.from_pretrained(teacher_dir), labels,
                    load_windows(windows / "train"), load_windows(windows / "validation"),
                    [s.tags for s in read_split(validated / "validation.jsonl")], cfg, meta)

    def student():
        return cut(AutoModelForTokenClassification.from_pretrained(teacher_dir, dtype=torch.float32), n)

    def forward(model, batch):   # in training: the student's logits and the teacher's side by side
        logits = model(**batch).logits
        if not model.training:
            return logits
        with torch.no_grad():
            taught = teacher(**batch).logits
        return torch.cat([logits, taught], -1)

    def loss_sum(logits, gold):
        scored = gold != IGNORE
        s, t = (x[scored] for x in logits.split(len(labels), -1))
        soft = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True,
                        reduction="sum")
        return alpha * F.cross_entropy(s, gold[scored], reduction="sum") + (1 - alpha) * temperature ** 2 * soft

    result = fit(dataclasses.replace(job, load_model=student, forward=forward, loss_sum=loss_sum), cfg, seed, work)
    teacher_f1 = json.loads((teacher_dir.parent / "train.json").read_text())["best_score"]
    return {"teacher_val_f1": round(teacher_f1, 4),
            "teacher_int8_val_f1": round(int8_val_f1(teacher_dir, windows, validated, labels, work / "teacher"), 4),
            "best_val_f1": round(result.best_score, 4), "best_epoch": result.best_epoch,
            "train_seconds": round(result.train_seconds, 1),
            "val_f1_by_epoch": [round(h["val_f1"], 4) for h in result.history if "val_f1" in h],
            "int8_val_f1": round(int8_val_f1(result.best_dir, windows, validated, labels, work), 4)}


def int8_val_f1(student: Path, windows: Path, validated: Path, labels: list[str], work: Path) -> float:
    """The student as the export stage serves it (ONNX, dynamic int8), scored on validation as evaluate scores."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerflow.config import load_config
    from nerflow.export import export_onnx, quantize_int8
    from nerflow.ner.data import read_split
    from nerflow.ner.evaluate import score
    from nerflow.ner.evaluation import predict_split
    from nerflow.runtimes import OnnxModel

    export_onnx(AutoModelForTokenClassification.from_pretrained(student), work / "onnx" / "model.onnx", True)
    quantize_int8(work / "onnx" / "model.onnx", work / "onnx" / "model-int8.onnx")
    sentences = read_split(validated / "validation.jsonl")
    cfg = load_config(BENCH.parent / "configs" / "conll2003.yaml").evaluate
    tags = predict_split(OnnxModel(work / "onnx" / "model-int8.onnx", len(labels)), sentences,
                         windows / "validation", labels, AutoTokenizer.from_pretrained(student).pad_token_id or 0, cfg)
    return score([s.tags for s in sentences], tags).f1


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cut")
    c.add_argument("layers", type=int)
    c.add_argument("--to", type=Path, required=True)
    d = sub.add_parser("distill")
    d.add_argument("layers", type=int)
    d.add_argument("--teacher-run", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--temperature", type=float, default=2.0)
    d.add_argument("--alpha", type=float, default=0.5)
    d.add_argument("--lr", type=float, default=3e-4)
    d.add_argument("--epochs", type=int, default=3)
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--work", type=Path, default=BENCH / "out" / "distill")
    args = ap.parse_args(argv)
    if args.command == "cut":
        cut_base(args.layers, args.to)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    row = {"layers": args.layers, "kept": kept_layers(args.layers), "temperature": args.temperature,
           "alpha": args.alpha, "lr": args.lr, "epochs": args.epochs, "seed": args.seed}
    name = " ".join(f"{k}={v}" for k, v in row.items())
    done = {json.loads(line)["row"] for line in args.out.read_text().splitlines()} if args.out.is_file() else set()
    if name in done:
        print(f"skip (done): {name}")
        return
    work = args.work / name.replace(" ", "-").replace("[", "").replace("]", "").replace(",", "_")
    row = {"row": name, **row, **distill(args.layers, args.teacher_run, args.temperature, args.alpha, args.lr,
                                         args.epochs, args.seed, work)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
