"""Data parallelism for the trainer: one process per rank, Megatron-Core's
``parallel_state`` for the groups.

``torchrun`` (``python -m torch.distributed.run``) starts the ranks and sets
``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``; a plain process is
rank 0 of a world of one, with an in-process store (no TCP rendezvous, so
concurrent runs on one machine never compete for a port). The backend is
chosen once, from the device: gloo on CPU, NCCL on GPUs.

Tensor and pipeline parallelism stay at 1 (the models here fit one device);
every rank is then in one data-parallel group, which is the group every
collective below uses. Gradients are averaged by torch's
``DistributedDataParallel`` on that group: Megatron-Core's own DDP allocates
its gradient buffers through ``torch.cuda`` and cannot run on the CPU ranks
CI has, and one code path for both devices matters more than its overlap
tricks at this model size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Dist:
    rank: int
    world: int
    dev: torch.device
    group: Any

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (the one place decisions are made)."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=dist.get_global_rank(self.group, 0), group=self.group,
                                   device=self.dev if self.dev.type == "cuda" else None)
        return box[0]

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (equal when ``world`` divides ``n``)."""
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def gather_rows(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """Concatenate every rank's :meth:`shard` of ``n`` rows, in rank order, on every rank."""
        if self.world == 1:
            return local
        import torch.distributed as dist

        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        sizes = np.diff(bounds)
        width = int(sizes.max())
        pad = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=local.device)
        pad[:len(local)] = local
        parts = [torch.empty_like(pad) for _ in range(self.world)]
        dist.all_gather(parts, pad.contiguous(), group=self.group)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init(dev: torch.device) -> Dist:
    """Join (or make) the process group and Megatron's model-parallel state."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if world_size() > 1:
            dist.init_process_group(backend, init_method="env://")
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(1, 1)
    if dev.type == "cuda":
        from megatron.core import tensor_parallel

        tensor_parallel.model_parallel_cuda_manual_seed(0)
    group = parallel_state.get_data_parallel_group()
    return Dist(parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size(),
                dev, group)


def wrap(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """The module whose backward averages gradients over the data-parallel group."""
    if d.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[d.dev.index] if d.dev.type == "cuda" else None,
               process_group=d.group, broadcast_buffers=False)
