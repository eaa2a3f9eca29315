"""The `train` section: fine-tuning's loop (nerflow.train.fit), its batches, precision, processes and LoRA adapters
(nerflow.adapters). Shared by every task type; a task's own train keys extend `TrainConfig` in its config module."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from nerflow.config_marks import REPORTING
from nerflow.config_marks import Section as _Section


class LoraConfig(_Section):
    """Low-rank adapters (Hu et al. 2021) through peft; used when `train.adapter: lora`."""
    rank: PositiveInt = 8                  # peft's LoraConfig default r
    alpha: PositiveFloat = 16.0            # update scaled by alpha / rank; 2x rank as in peft's examples
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # every linear layer of the encoder (QLoRA's finding, Dettmers et al. 2023, and ours: on CoNLL-2003 validation F1
    # 0.905 against 0.881 with peft's BERT default [query, value], the LoRA paper's W_q, W_v; docs/benchmarks.md "LoRA")
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainConfig(_Section):
    epochs: PositiveInt = 3
    lr: PositiveFloat | Literal["auto"] = "auto"   # auto: by model size, run length and batch, nerflow.optim.default_lr
    batch_tokens: PositiveInt | None = 1024        # padded positions per optimizer step (length-grouped batches)
    batch_size: PositiveInt | None = None          # or: this many sequences per step (the recipe's way)
    min_steps: NonNegativeInt = 100                # small data: the token budget shrinks to give this many steps
    eval_batch_tokens: PositiveInt = 16384         # validation: padded positions per forward pass ...
    eval_batch_size: PositiveInt = 256             # ... and at most this many sequences
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    max_grad_norm: PositiveFloat = 1.0
    freeze: Literal["none", "word_embeddings", "embeddings"] | NonNegativeInt = 1   # N: embeddings + first N layers
    # lora: the base model is frozen by peft and only the adapters and the task head train, so `freeze` is unused
    # (nerflow.adapters); `best` is the merged model, the adapter with its head is kept beside it
    adapter: Literal["none", "lora"] = "none"
    lora: LoraConfig = LoraConfig()
    early_stopping_patience: NonNegativeInt = 2    # epochs without a better validation score; 0 = off
    checkpoint_every: Annotated[NonNegativeInt, REPORTING] = 200   # steps; 0 = only at epoch ends
    keep_checkpoints: Annotated[PositiveInt, REPORTING] = 2
    log_every: Annotated[PositiveInt, REPORTING] = 20              # steps between logged training-loss points
    group_by_length: bool = True                   # batches of similar length: less padding, same epochs
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"   # auto: bf16 on GPUs that have it, else fp16;
    #                                                               fp32 on CPU
    compile: bool = False                          # torch.compile the model (slower on CPU: docs/benchmarks.md)
    devices: PositiveInt | Literal["auto"] = 1     # processes per machine (DDP through torchrun); auto: one per GPU
    nodes: PositiveInt = 1                         # machines; more than 1 needs master_addr (docs/distributed.md)
    master_addr: Annotated[str | None, REPORTING] = None   # node 0's address, reachable from the other nodes
    master_port: Annotated[int, REPORTING, Field(ge=1, le=65535)] = 29500
    # torch CPU threads (None: torch's default). In the key: the thread count changes the order of floating-point
    # sums, so the same seed can give other weights with another count.
    num_threads: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_batch_rule(self):
        """`batch_size` set (e.g. by an older config) means sequences per step: the token budget is then unused and
        is cleared, so the resolved config says which rule applied. Setting both is a mistake."""
        if self.batch_size is None:
            if self.batch_tokens is None:
                raise ValueError("set train.batch_tokens (padded tokens per step) or train.batch_size")
            return self
        if "batch_tokens" in self.model_fields_set and self.batch_tokens is not None:
            raise ValueError("set train.batch_tokens or train.batch_size, not both (batch_tokens=null to use "
                             "batch_size)")
        object.__setattr__(self, "batch_tokens", None)
        return self

    @model_validator(mode="after")
    def _nodes_need_an_address(self):
        if self.nodes > 1 and not self.master_addr:
            raise ValueError("train.nodes > 1 needs train.master_addr: the address of node 0 that every node "
                             "can reach")
        return self
