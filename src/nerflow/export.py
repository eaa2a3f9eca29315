"""The export stage's library: the fine-tuned model as ONNX (fp32) and dynamically quantized to int8, each runtime
scored on validation and test with the task's own evaluation code, measured (size, throughput, latency), and the
served runtime chosen on validation F1.

The choice: int8 when its validation F1 is within `export.max_f1_drop` points of PyTorch fp32's, else ONNX fp32 under
the same rule, else PyTorch; the reason is recorded (`runtime.json`, the version's tags). With `export.bf16` on a
CPU with bf16 matrix instructions (nerflow.runtimes.native_bf16) PyTorch in bf16 is measured too, and when it and
int8 are both within the limit the faster of the two as measured here is served (on a CPU with AMX, bf16 ran
CoNLL-2003 `predict` batches 2.7x faster than fp32 where int8 ran them 1.7x, and whole movie reviews 3.6x;
docs/benchmarks.md). Validation decides, so
test F1 stays an unbiased report of the choice. Dynamic quantization stores weights as int8 and quantizes
activations per batch at run time, which needs no calibration data; static quantization of BERT-like models is
known to collapse accuracy without careful calibration (docs/benchmarks.md, "Serving fast").

What differs per task (the transformers class, how a split is scored, what a request is) comes in through
`ExportTask`, implemented in nerflow.ner.export and nerflow.textcat.export.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from nerflow.outputs import SERVED_DIR
from nerflow.runtimes import (
    DISTILLED_INT8,
    INPUTS,
    ONNX,
    ONNX_INT8,
    RUNTIME_FILE,
    TORCH,
    TORCH_BF16,
    OnnxModel,
    native_bf16,
)

log = logging.getLogger("nerflow.export")

ONNX_FILES = {ONNX: "onnx/model.onnx", ONNX_INT8: "onnx/model-int8.onnx",
              DISTILLED_INT8: "onnx/model-int8-distilled.onnx"}
STUDENT_FP32 = "onnx/model-distilled.onnx"   # the student before quantization (not served)
EXPORT_FILE = "export.json"
OPSET = 17              # what torch's TorchScript exporter and onnxruntime 1.31's quantizer both handle


class ExportTask(Protocol):
    auto_class: Any          # AutoModelForTokenClassification | AutoModelForSequenceClassification
    unit: str                # what throughput counts: "words" (NER) or "texts"

    def score(self, model, split: str) -> tuple[float, int]:
        """(the headline F1 of `model` on `split`, scored as the evaluate stage scores it; units it read)."""

    def answerer(self, model) -> Callable[[list[str]], Any]:
        """A served request: raw texts -> answers, through the task's predictor running `model`."""

    def requests(self, n: int) -> list[str]:
        """`n` raw texts to time single requests on (validation texts, in order)."""


def export_onnx(model, path: Path, sequence_output: bool) -> None:
    """`model` (a transformers model, on the CPU) as an ONNX graph with dynamic batch and length. The TorchScript
    exporter (`dynamo=False`, deprecated in torch 2.13 but kept): the dynamo exporter writes weights as external
    data, which onnxruntime's quantization pre-processing cannot read, and it needs onnxscript besides."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "sequence"} if sequence_output else {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # the deprecation and tracer warnings about Python control flow
        torch.onnx.export(model, (ids, torch.ones_like(ids)), str(path), input_names=list(INPUTS),
                          output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def quantize_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantization (weights int8, activations quantized per batch), after onnxruntime's
    pre-processing (graph optimisation and shape inference; its symbolic shape inference fails on these graphs and
    is skipped: the quantizer then works from ONNX's own shape inference)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=int8.parent, prefix=".quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(int8), weight_type=QuantType.QInt8, per_channel=True)


def latency_ms(answer: Callable[[list[str]], Any], texts: list[str]) -> tuple[float, float]:
    """(p50, p99) milliseconds of one request of one text, over `texts` (after three warm-up requests)."""
    for text in texts[:3]:
        answer([text])
    times = []
    for text in texts:
        started = time.perf_counter()
        answer([text])
        times.append((time.perf_counter() - started) * 1000)
    if len(times) < 2:
        return (times[0], times[0]) if times else (0.0, 0.0)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return cuts[49], cuts[98]


def measure(task: ExportTask, model, files: list[Path], requests: int) -> dict[str, float]:
    """Validation and test F1, size, throughput (units per second over the test split's batched pass, after load)
    and single-request latency of one runtime."""
    val_f1, _ = task.score(model, "validation")
    started = time.perf_counter()
    test_f1, units = task.score(model, "test")
    seconds = time.perf_counter() - started
    p50, p99 = latency_ms(task.answerer(model), task.requests(requests))
    return {"val_f1": float(val_f1), "test_f1": float(test_f1), "mb": sum(f.stat().st_size for f in files) / 1e6,
            f"{task.unit}_per_s": units / seconds if seconds else 0.0, "p50_ms": p50, "p99_ms": p99}


def _speed(row: dict) -> float:
    return next((float(v) for k, v in row.items() if k.endswith("_per_s")), 0.0)


def choose(rows: dict[str, dict], max_f1_drop: float) -> tuple[str, str]:
    """(runtime, reason): the first of bf16 / int8 (the faster of the two as measured, when both qualify), ONNX fp32
    whose validation F1 is within `max_f1_drop` points of PyTorch fp32's. A distilled student (int8) comes before
    them when it is within the limit too and faster than each of them and than PyTorch fp32, as measured: a smaller
    model only earns its place by speed. `rows` holds `val_f1` (and the measured `<unit>_per_s`) per runtime
    measured (one not tried, or whose export failed, is absent)."""
    base = rows[TORCH]["val_f1"]
    said, within = [], []
    for runtime in (DISTILLED_INT8, TORCH_BF16, ONNX_INT8, ONNX):
        if runtime not in rows:
            continue
        drop = (base - rows[runtime]["val_f1"]) * 100
        if drop <= max_f1_drop + 1e-9:
            within.append((runtime, drop))
        else:
            said.append(f"{runtime} not served: validation F1 {rows[runtime]['val_f1']:.4f} is {drop:.2f} points "
                        f"below PyTorch fp32's {base:.4f} (export.max_f1_drop {max_f1_drop:g})")
    if within and within[0][0] == DISTILLED_INT8:
        student, rivals = within[0], [TORCH] + [r for r, _ in within[1:]]
        fastest = max(rivals, key=lambda r: _speed(rows[r]))
        if _speed(rows[DISTILLED_INT8]) > _speed(rows[fastest]):
            within = [student]
        else:
            said.append(f"{DISTILLED_INT8} not served: {_speed(rows[DISTILLED_INT8]):,.0f} per second against "
                        f"{fastest}'s {_speed(rows[fastest]):,.0f}")
            within = within[1:]
    if not within:
        return TORCH, "; ".join(said) or "no ONNX model to compare"
    if [r for r, _ in within[:2]] == [TORCH_BF16, ONNX_INT8]:
        slower, faster = sorted(within[:2], key=lambda item: _speed(rows[item[0]]))
        said.append(f"{slower[0]} not served: {_speed(rows[slower[0]]):,.0f} per second against {faster[0]}'s "
                    f"{_speed(rows[faster[0]]):,.0f}")
        within = [faster]
    runtime, drop = within[0]
    return runtime, "; ".join([*said, f"{runtime}: validation F1 {rows[runtime]['val_f1']:.4f} vs PyTorch fp32 "
                                      f"{base:.4f} ({round(-drop, 2) + 0.0:+.2f} points; allowed -{max_f1_drop:g})"])


def link_tree(src: Path, dst: Path) -> None:
    """A copy of `src` at `dst`, hard-linked where the filesystem allows (the weights are not stored twice)."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def export_student(student_dir: Path, task: ExportTask, out: Path) -> OnnxModel | None:
    """The distill stage's student as int8 ONNX (exported and quantized as the fine-tuned model is), or None when
    that fails (said in the log: the other runtimes are measured anyway)."""
    try:
        student = task.auto_class.from_pretrained(student_dir).eval()
        export_onnx(student, out / STUDENT_FP32, sequence_output=task.unit == "words")
        quantize_int8(out / STUDENT_FP32, out / ONNX_FILES[DISTILLED_INT8])
        return OnnxModel(out / ONNX_FILES[DISTILLED_INT8], student.config.num_labels)
    except Exception as e:  # noqa: BLE001 - the fine-tuned model is still served by one of the others
        log.warning("export: the distilled student was not exported (%s: %s)", type(e).__name__,
                    str(e).splitlines()[0] if str(e) else "")
        return None


def export_runtimes(model_dir: Path, task: ExportTask, cfg, out: Path, student_dir: Path | None = None) -> dict:
    """Export, quantize, measure every runtime, choose one; write `out/onnx/`, `out/export.json` and the served
    folder `out/served/` (the weights, `runtime.json` and the chosen ONNX file). `student_dir`: the distill
    stage's student, measured as `onnx-int8-distilled`. Returns export.json's content."""
    torch_model = task.auto_class.from_pretrained(model_dir).eval()
    models: dict[str, tuple[Any, list[Path]]] = {TORCH: (torch_model, sorted(Path(model_dir).glob("*.safetensors")))}
    failed = ""
    try:
        export_onnx(torch_model, out / ONNX_FILES[ONNX], sequence_output=task.unit == "words")
        runtimes = [ONNX]
        if cfg.quantize:
            quantize_int8(out / ONNX_FILES[ONNX], out / ONNX_FILES[ONNX_INT8])
            runtimes.append(ONNX_INT8)
        for runtime in runtimes:
            path = out / ONNX_FILES[runtime]
            models[runtime] = (OnnxModel(path, torch_model.config.num_labels), [path])
    except Exception as e:  # noqa: BLE001 - an architecture the exporter cannot trace is served by PyTorch
        failed = f"ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        log.warning("%s: serving the PyTorch weights", failed)
    if cfg.bf16 and native_bf16():    # the same weights, cast when loaded: nothing more to store
        models[TORCH_BF16] = (task.auto_class.from_pretrained(model_dir).eval().to(torch.bfloat16),
                              models[TORCH][1])
    elif cfg.bf16:
        log.info("export: torch-bf16 not tried: this CPU has no bf16 matrix instructions")
    if student_dir is not None and (student := export_student(Path(student_dir), task, out)) is not None:
        models[DISTILLED_INT8] = (student, [out / ONNX_FILES[DISTILLED_INT8]])
    rows = {}
    for runtime, (model, files) in models.items():
        log.info("export: scoring and timing %s", runtime)
        rows[runtime] = measure(task, model, files, cfg.latency_requests)
    runtime, reason = choose(rows, cfg.max_f1_drop)
    reason = f"{failed}; {reason}" if failed else reason
    served = out / SERVED_DIR
    link_tree(Path(model_dir), served)
    chosen = {"runtime": runtime, "file": ONNX_FILES.get(runtime, ""), "reason": reason}
    if chosen["file"]:
        (served / "onnx").mkdir()
        shutil.copy2(out / chosen["file"], served / chosen["file"])
    (served / RUNTIME_FILE).write_text(json.dumps(chosen, indent=1))
    summary = {**chosen, "max_f1_drop": cfg.max_f1_drop, "unit": task.unit, "rows": rows}
    (out / EXPORT_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def metric_name(runtime: str) -> str:
    return runtime.replace("-", "_")


def metrics(summary: dict) -> dict[str, float]:
    """`export/<runtime>_<measure>` for MLflow (docs/metrics.md): onnx-int8 -> onnx_int8."""
    return {f"export/{metric_name(rt)}_{k}": float(v) for rt, row in summary["rows"].items() for k, v in row.items()}

