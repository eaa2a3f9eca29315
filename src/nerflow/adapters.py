"""Parameter-efficient fine-tuning, task-blind: `train.adapter: lora` wraps the task model in peft's low-rank adapters.

With LoRA peft freezes every base parameter; what trains is the adapters in `train.lora.target_modules` and the task
head (the model's own modules outside its encoder, e.g. `classifier`, through peft's `modules_to_save`), so
`train.freeze` has nothing left to freeze and is unused. The loop (`nerflow.train.fit`) trains, checkpoints, resumes
and runs DDP on the wrapped model like on any other. What is served is the merged model: a plain Hugging Face folder
of the base's size that loads without peft; the adapter with its head is saved beside it in `ADAPTER_DIR`.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from nerflow.config import TrainConfig

ADAPTER_DIR = "adapter"   # inside a saved model folder: peft's adapter_config.json + adapter_model.safetensors


def task_head(model: torch.nn.Module) -> list[str]:
    """The names of the model's trainable modules outside its encoder (`classifier` for BERT-like heads): what LoRA
    must train in full, as a new head starts random."""
    return [name for name, module in model.named_children()
            if module is not model.base_model and any(True for _ in module.parameters())]


def wrap(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    """`model` as-is for `train.adapter: none`; else wrapped in LoRA adapters with its task head trainable."""
    if cfg.adapter == "none":
        return model
    from peft import LoraConfig, get_peft_model

    lora = cfg.lora
    try:
        return get_peft_model(model, LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                target_modules=lora.target_modules,
                                                modules_to_save=task_head(model)))
    except ValueError as e:   # peft: "Target modules ... not found in the base model"
        raise ValueError(f"train.lora.target_modules={lora.target_modules}: {e}") from None


def is_adapted(model: torch.nn.Module) -> bool:
    # a model with adapters was wrapped by peft, so peft is imported already; importing it to learn that a plain
    # model is plain cost every train stage without LoRA ~2.5 s
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def trainable_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model to serve: the adapters folded into a copy of the base weights (the trained model stays
    wrapped, as training goes on). A model without adapters is returned as-is."""
    if not is_adapted(model):
        return model
    return copy.deepcopy(model).merge_and_unload()


def save_adapter(model: torch.nn.Module, folder: Path) -> int:
    """Write the adapter with its head to `folder/ADAPTER_DIR`; returns its size in bytes (0 without adapters)."""
    if not is_adapted(model):
        return 0
    target = folder / ADAPTER_DIR
    model.save_pretrained(target)
    return folder_bytes(target)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
