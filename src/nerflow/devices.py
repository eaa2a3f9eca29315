"""Where a training process computes: the device and its precision, the seeds, and what it measured of itself."""
from __future__ import annotations

import hashlib
import random
import resource

import numpy as np
import torch

from nerflow import distributed
from nerflow.config import TrainConfig


def select_device(cfg: TrainConfig, world: distributed.World) -> tuple[str, torch.dtype | None]:
    """CUDA when present (bf16 autocast where the GPU supports it, fp16 with a loss scaler otherwise; TF32
    matmuls), CPU otherwise (fp32: the CPUs this was measured on have no fast half precision)."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    if not use_cuda:
        if cfg.precision in ("bf16", "fp16"):
            raise RuntimeError(f"train.precision={cfg.precision} needs a CUDA device")
        return "cpu", None
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = f"cuda:{world.local_rank}"
    bf16_ok = torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not bf16_ok:
        raise RuntimeError("train.precision=bf16 but this GPU does not support bf16 (use fp16)")
    if cfg.precision == "fp32":
        return device, None
    if cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_ok):
        return device, torch.bfloat16
    return device, torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory(device: str) -> int:
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # kilobytes on Linux


def weights_digest(model) -> str:
    """sha256 over the weights (names and bytes): equal on every rank of a data-parallel run."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
