"""What is trained and how fast: frozen parameters, AdamW (fused where the build has it), the schedule, `lr: auto`.

Frozen parameters get `requires_grad=False` and stay out of the optimizer, so they hold no AdamW state, cost no
update, and are bit-identical after training.
"""
from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger(__name__)
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def encoder_layers(model) -> torch.nn.ModuleList:
    """The transformer's stack of layers (BERT's `encoder.layer`, DistilBERT's `transformer.layer`, ...): the
    first ModuleList as long as `config.num_hidden_layers`."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.base_model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find the {n} transformer layers of {type(model).__name__} to freeze")


def freeze(model, what: str | int) -> list[str]:
    """Freeze `what`: "none", "word_embeddings" (the token embedding matrix: half of MiniLM's parameters),
    "embeddings" (word, position and type embeddings with their LayerNorm) or N (embeddings and the first N
    layers). Returns the frozen parameters' names."""
    modules: list[torch.nn.Module]
    if what == "none":
        modules = []
    elif what == "word_embeddings":
        modules = [model.get_input_embeddings()]
    else:
        embeddings = getattr(model.base_model, "embeddings", None) or model.get_input_embeddings()
        modules = [embeddings]
        if isinstance(what, int):
            layers = encoder_layers(model)
            if what > len(layers):
                raise ValueError(f"train.freeze={what} but the model has {len(layers)} layers")
            modules += list(layers[:what])
    frozen = {id(p) for m in modules for p in m.parameters()}
    names = []
    for name, p in model.named_parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
            names.append(name)
    return names


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model, weight_decay: float, lr: float, warmup_steps: int, total_steps: int):
    """AdamW over the trainable parameters (no decay on biases and norms), linear warmup then linear decay.
    The fused kernel is several times faster than the default one on CPU and GPU (docs/benchmarks.md)."""
    from transformers import get_linear_schedule_with_warmup

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    try:
        optimizer = torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError) as e:   # a build or device without the fused kernel
        log.info("fused AdamW unavailable (%s): using the default implementation", e)
        optimizer = torch.optim.AdamW(groups, lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    return optimizer, scheduler


def warmup_steps(total_steps: int, ratio: float) -> int:
    return math.ceil(total_steps * ratio)


# examples per step the base rates below were measured at (the Trainer recipe's batch of 8)
BASE_BATCH = 8
SHORT_RUN_EXAMPLES = 16_000   # 2,000 steps of 8: shorter runs of small models need a higher rate to learn at all


# `train.adapter: lora` trains ~1% of the weights from a zero-initialised update and needs a ~10x higher rate than
# full fine-tuning: the LoRA paper (Hu et al. 2021, Table 9) trains RoBERTa-base at 4e-4..5e-4 where full
# fine-tuning uses 1e-5..3e-5, and peft's examples use 1e-3 (BERT-like sequence/token classification) against the
# 2e-5..5e-5 of the Hugging Face recipes. Measured on CoNLL-2003 (MiniLM, all-linear, docs/benchmarks.md "LoRA"):
# 10x (3.03e-3) scored validation F1 0.905, a third of it 0.900, twice it 0.873.
LORA_LR_FACTOR = 10.0


def default_lr(n_params: int, examples_seen: int, mean_batch: float, adapter: str = "none") -> float:
    """`train.lr: auto`: by model size and run length at 8 examples per step, then scaled with the batch as
    (examples per step / 8) ** (2/3), never below the base. More examples per step average out more noise, so a step
    can be longer; the exponent is measured, not assumed (between the square root often quoted for Adam and linear
    scaling). Measurements in docs/benchmarks.md ("Learning rate"):

    - MiniLM, 300 CoNLL sentences, 1 epoch: the recipe's 5e-5 predicts only `O`; 3e-4 learns (F1 ~0.3-0.4).
    - MiniLM, all of CoNLL, 3 epochs at 8 sentences per step: validation F1 0.899 at 3e-4, 0.912 at 1e-4.
    - ... at 1,024 tokens per step (~42 sentences): 0.910 at 1e-4, 0.914 at 2e-4, 0.917 at 3e-4, 0.912 at 4e-4:
      the best rate is ~3x the 8-per-step one for 5.3x the batch, 5.3 ** (2/3) = 3.0.

    `adapter="lora"`: LORA_LR_FACTOR times that (provisional, see above); `n_params` is the base model's size.
    """
    if n_params < 60_000_000:   # MiniLM, DistilBERT-small, tiny test models
        base = 3e-4 if examples_seen < SHORT_RUN_EXAMPLES else 1e-4
    elif n_params < 200_000_000:  # BERT-base, RoBERTa-base
        base = 5e-5
    else:                         # large models
        base = 2e-5
    factor = LORA_LR_FACTOR if adapter == "lora" else 1.0
    return factor * base * max(1.0, mean_batch / BASE_BATCH) ** (2 / 3)
