"""Several processes, one training run: the collectives the loop needs, through torch.distributed (DDP).

The loop calls these whatever the world size; with one process they cost nothing and sync nothing. Processes are
started by torchrun (`nerflow.launch`), which sets RANK / WORLD_SIZE / LOCAL_RANK; `init()` joins the group
(NCCL on GPUs, gloo on CPUs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 logs, checkpoints and saves the model; every rank trains."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def init() -> World:
    """Join the process group torchrun describes in the environment (a no-op without torchrun)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", 1)) == 1 or dist.is_initialized():
        return current()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_and_any(values: torch.Tensor, flag: bool, world: World) -> tuple[torch.Tensor, bool]:
    """All-reduce `values` (summed over ranks) and OR a flag with one collective; one process: as given."""
    if not world.distributed:
        return values, flag
    packed = torch.cat([values.detach().float().reshape(-1).to(_device()),
                        torch.tensor([1.0 if flag else 0.0], device=_device())])
    dist.all_reduce(packed)
    return packed[:-1].to(values.device), bool(packed[-1].item() > 0)


def any_rank(flag: bool, world: World) -> bool:
    return sum_and_any(torch.zeros(0), flag, world)[1]


def from_main(obj, world: World):
    """Rank 0's `obj` on every rank (validation results: every rank takes the same early-stopping decision)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, world: World) -> list:
    """Every rank's `obj`, in rank order, on every rank (RNG states for a checkpoint)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
