"""The `export` section: the fine-tuned model as ONNX, fp32 and dynamically quantized int8, and the runtime that
serves the registered version chosen on validation F1 (nerflow.export). Off unless a config turns it on (the shipped
configs do); off, the stage is absent from the plan and no other stage's key changes."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt


class ExportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    # points of validation F1 (0.5 = half a point) a compressed runtime may lose against PyTorch fp32 and still be
    # the one served; beyond it the next runtime is tried (int8 -> ONNX fp32 -> PyTorch)
    max_f1_drop: NonNegativeFloat = 0.5
    quantize: bool = True           # try dynamic int8 (false: ONNX fp32 or PyTorch only)
    # try PyTorch in bf16 where the CPU has bf16 matrix instructions (AMX, AVX-512 BF16); served when within
    # max_f1_drop and its batch throughput beats int8's as measured by the stage. On a Xeon with AMX: CoNLL-2003
    # batches 2.7x fp32's speed but single sentences no faster; whole movie reviews 3.6x, 0.40x the latency
    # (docs/benchmarks.md, "Serving fast"); configs/movie_reviews.yaml turns it on
    bf16: bool = False
    latency_requests: PositiveInt = 50   # single-text requests timed per runtime (validation texts, in order)
