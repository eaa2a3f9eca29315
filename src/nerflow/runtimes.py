"""Which runtime answers with a model folder: PyTorch on the fp32 weights, PyTorch in bf16 (the same weights cast
at load, on a CPU that computes bf16 natively), or ONNX Runtime on the ONNX model the export stage chose
(nerflow.export): fp32, or dynamically quantized to int8, or the int8 ONNX of a student distilled from the
fine-tuned model (fewer encoder layers: nerflow.distill).

A served folder the export stage wrote holds the Hugging Face weights as always, plus `runtime.json` and the chosen
ONNX file under `onnx/`; a folder without `runtime.json` (every model before the export stage, a run with
`export.enabled: false`) is served by PyTorch. Predictors (nerflow.ner.predict, nerflow.textcat.predict) get their
model from `load_model` and call it exactly as they call a transformers model, so windowing, pooling, decoding and
scoring are the same code whatever runs the forward pass.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from nerflow.config import ConfigError

log = logging.getLogger("nerflow.runtimes")

RUNTIME_FILE = "runtime.json"      # in a served folder: {"runtime", "file", "reason"}
TORCH, TORCH_BF16, ONNX, ONNX_INT8 = "torch", "torch-bf16", "onnx", "onnx-int8"
DISTILLED_INT8 = "onnx-int8-distilled"   # the distill stage's student (fewer layers), int8 (nerflow.distill)
RUNTIMES = (TORCH, TORCH_BF16, ONNX, ONNX_INT8, DISTILLED_INT8)
CHOICES = (TORCH, TORCH_BF16, ONNX)   # what `--runtime` may force: the weights (fp32, bf16), or the served ONNX file
INPUTS = ("input_ids", "attention_mask")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")   # /proc/cpuinfo flags of CPUs with bf16 matrix instructions


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX or AVX-512 BF16: Intel Xeon since Sapphire Rapids,
    AMD since Zen 4). Elsewhere PyTorch emulates bf16 and it is slower than fp32, so the export stage does not try it
    and a folder served in bf16 runs fp32 there. Linux only (False where /proc/cpuinfo is absent)."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in BF16_FLAGS)


def served_runtime(folder: Path | str) -> dict:
    """What the export stage chose for this folder; PyTorch for a folder it never saw."""
    path = Path(folder) / RUNTIME_FILE
    if not path.is_file():
        return {"runtime": TORCH, "file": "", "reason": "no export stage: the PyTorch weights"}
    return json.loads(path.read_text())


def threads() -> int:
    """ONNX Runtime's threads: OMP_NUM_THREADS when set (what torch obeys too: a test worker or a server process
    sharing the machine sets it), else the cores this process may use (a container's CPU set, not the host's)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxModel:
    """An ONNX Runtime session that answers like a transformers model: `model(input_ids=, attention_mask=)` gives
    an object whose `.logits` is a float tensor; `eval`/`train`/`training` and `config.num_labels` are there because
    the prediction loops touch them. CPU only: the runtime is chosen for serving on CPUs.

    A batch of at least `SPLIT_ROWS` rows per thread is split across one-thread sessions run side by side (ONNX
    Runtime releases the GIL), one per thread: on 2 cores that ran 5-15% more positions per second than one
    two-thread session, whose operators synchronise their threads at every step (docs/benchmarks.md, "What 3x on
    CoNLL-2003 would take"). Smaller batches and single requests use the one multi-thread session. Rows are
    independent, so the answers are the same, but for int8: its activation scales are computed per batch, so a row's
    answer can move slightly with what shares its batch, as it already could."""

    training = False
    SPLIT_ROWS = 8

    def __init__(self, path: Path | str, num_labels: int, n_threads: int | None = None):
        self.path = Path(path)
        self.n_threads = n_threads or threads()
        # Sessions are made from the file's bytes, read once here: a loaded model must not need its file again,
        # since its caller may delete it (the gate scores versions downloaded to a temporary folder, then removes
        # it), and the split sessions are made later. The bytes are kept only until then. (nerflow's exporter
        # writes one self-contained file: no external data to find next to it.)
        model = self.path.read_bytes()
        self.session = self._session(self.n_threads, model)
        self.model_bytes: bytes | None = model if self.n_threads > 1 else None
        self.parts: list = []           # the one-thread sessions, made at the first batch large enough to split
        self.pool = None
        self.making = threading.Lock()  # a served model answers requests on several threads: make them once
        self.config = SimpleNamespace(num_labels=num_labels)

    @staticmethod
    def _session(n_threads: int, model: bytes):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1          # one graph at a time: its operators use the cores
        options.log_severity_level = 3            # warnings about unused initializers are noise to a user
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def to(self, device) -> OnnxModel:
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        feed = {"input_ids": np.ascontiguousarray(input_ids.cpu().numpy(), dtype=np.int64),
                "attention_mask": np.ascontiguousarray(attention_mask.cpu().numpy(), dtype=np.int64)}
        if self.n_threads > 1 and len(feed["input_ids"]) >= self.SPLIT_ROWS * self.n_threads:
            logits = self._split(feed)
        else:
            (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def _split(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        from concurrent.futures import ThreadPoolExecutor

        with self.making:
            if not self.parts:
                self.pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="onnx")
                self.parts = [self._session(1, self.model_bytes) for _ in range(self.n_threads)]
                self.model_bytes = None
        shares = np.array_split(np.arange(len(feed["input_ids"])), self.n_threads)

        def run(session, rows) -> np.ndarray:
            return session.run(["logits"], {k: np.ascontiguousarray(v[rows]) for k, v in feed.items()})[0]

        return np.concatenate(list(self.pool.map(run, self.parts, shares)))


def load_model(folder: Path | str, auto_class, device: str, runtime: str | None = None):
    """The model that answers for `folder`: the runtime it is served with, or `runtime` (torch | torch-bf16 | onnx)
    when forced. `auto_class` is the transformers class of the task (AutoModelForTokenClassification, ...). A folder
    served in bf16 runs fp32 on a CPU without native bf16 (said once in the log); forced, bf16 runs anyway."""
    folder = Path(folder)
    chosen = served_runtime(folder)
    if runtime is not None and runtime not in CHOICES:
        raise ConfigError(f"--runtime: unknown runtime {runtime!r} (one of {', '.join(CHOICES)})")
    wanted = runtime or (chosen["runtime"] if chosen["runtime"] in (TORCH, TORCH_BF16) else ONNX)
    if wanted == TORCH_BF16 and runtime is None and device == "cpu" and not native_bf16():
        log.warning("%s is served in bf16, which this CPU has no instructions for: running the fp32 weights", folder)
        wanted = TORCH
    if wanted in (TORCH, TORCH_BF16):
        model = auto_class.from_pretrained(folder).to(device)
        # logits come back in bf16: every predictor reads them through .float()
        return model.to(torch.bfloat16) if wanted == TORCH_BF16 else model
    if chosen["runtime"] == TORCH or not chosen.get("file"):
        raise ConfigError(f"{folder}: no ONNX model to run ({chosen['reason']}); use --runtime torch")
    labels = json.loads((folder / "config.json").read_text()).get("id2label") or {}
    return OnnxModel(folder / chosen["file"], len(labels) or 2)
