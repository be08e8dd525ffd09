"""Data-parallel training: one process per GPU (torchrun), or 2 gloo processes on a CPU (tests).

`DataParallel.from_env` runs first, before any model, encoder or index is built: it decides this
rank's device (`cuda:{LOCAL_RANK}`, jsarag.model.device.placement), binds it with
`torch.cuda.set_device`, and joins the process group (NCCL on GPUs, gloo on CPUs).

Gradients are synchronized by PyTorch's DistributedDataParallel (`wrap`), which all-reduces them in
buckets while backward still runs. The arithmetic of the single-process loop is kept: an optimizer
step covers `grad_accum` micro-batches of `batch_size` examples, in the same order. With W
processes, micro-batch j of a step goes to rank j mod W, so each rank accumulates grad_accum / W
micro-batches (under `no_sync` but the last); each loss is scaled by W / grad_accum, and DDP's mean
over ranks gives the single-process gradient. Every rank then clips and steps on the same gradient,
so the weights stay equal. What else must agree across ranks:
- the starting weights: DDP broadcasts rank 0's trainable parameters at `wrap` (freshly initialized
  LoRA weights differ); frozen weights and buffers are loaded from the same files and not sent;
- the logged terms of a step: summed over ranks, rank 0 writes the log;
- the method state (JSA's MIS cache, example id -> passage row): after each step every rank sends
  the entries of the examples it saw, and all ranks apply them (all-gather);
- random draws (MIS proposals, sampled VRAG): the trainer's sampler is reseeded per micro-batch
  from (seed, micro-batch index), so a draw does not depend on which rank makes it;
- the dense index: each rank holds its own rows (jsarag.model.dense_index), searched collectively;
- checkpoints: rank 0 writes, the others wait at a barrier; on restart every rank loads the same file.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as td

from jsarag.model.device import is_cuda, resolve_device


def rank_threads(threads: int, world: int) -> int:
    """CPU threads of one rank: the job's threads (its cpus_per_task) shared by its ranks."""
    return max(1, threads // max(1, world))


@dataclass
class DataParallel:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    device: str = "cpu"  # this rank's device: "cpu" or "cuda:{local_rank}"
    per_micro_seed: bool = False  # reseed the sampler per micro-batch (always on when world > 1)

    @classmethod
    def from_env(cls, requested: str = "auto", where: str = "train.common.device") -> DataParallel:
        """This process's rank in torchrun's group (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT),
        bound to its device; a single process when WORLD_SIZE is unset or 1."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(requested, where, local)
        if is_cuda(device):
            torch.cuda.set_device(device)  # any implicit "current device" is now this rank's GPU
        if world <= 1:
            return cls(device=device)
        if not td.is_initialized():
            if is_cuda(device):
                td.init_process_group("nccl", device_id=torch.device(device))
            else:
                td.init_process_group("gloo")
        return cls(world=world, rank=rank, local_rank=local, device=device, per_micro_seed=True)

    def close(self) -> None:
        """Leave the process group. Without this, gloo's threads are torn down by the interpreter
        at exit and the process can abort ("terminate called without an active exception", -6)
        after its work is done."""
        if self.world > 1 and td.is_initialized():
            td.destroy_process_group()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> str:
        """Where collective tensors live: this rank's GPU under NCCL, the CPU under gloo."""
        return self.device if is_cuda(self.device) else "cpu"

    def local_accum(self, grad_accum: int) -> int:
        if grad_accum % self.world:
            raise ValueError(f"train.common.grad_accum ({grad_accum}) must be a multiple of the number of processes ({self.world})")
        return grad_accum // self.world

    def mine(self, micro: int, grad_accum: int) -> bool:
        """Whether this rank computes micro-batch `micro` (a global index)."""
        return (micro % grad_accum) % self.world == self.rank

    def loss_scale(self, grad_accum: int) -> float:
        """The factor of each micro-batch's loss: 1 / grad_accum of the step, times W against DDP's mean."""
        return self.world / grad_accum

    def seed_sampler(self, sampler: torch.Generator, seed: int, micro: int) -> None:
        if self.per_micro_seed:
            sampler.manual_seed((seed + 1) * 1_000_003 + micro)

    # -- the model --------------------------------------------------------------------------
    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP over the trainable parameters (one process: the module itself). Frozen weights (the
        generator's base) and buffers are left out of the start-up broadcast: every rank loads them
        from the same files. No parameter that requires a gradient may go unused in a step (the
        encoders' unused pooler is frozen: jsarag.model.encoders)."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        skip = [n for n, p in module.named_parameters() if not p.requires_grad] + [n for n, _ in module.named_buffers()]
        DDP._set_params_and_buffers_to_ignore_for_model(module, skip)
        return DDP(module, device_ids=[self.local_rank] if is_cuda(self.device) else None, broadcast_buffers=False)

    @staticmethod
    def no_sync(net: torch.nn.Module, sync: bool):
        """Accumulate locally (no all-reduce) unless `sync`: the last micro-batch of the step on this rank."""
        return net.no_sync() if not sync and hasattr(net, "no_sync") else contextlib.nullcontext()

    # -- collectives ------------------------------------------------------------------------
    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        if self.world == 1:
            return [t]
        out = [torch.empty_like(t) for _ in range(self.world)]
        td.all_gather(out, t.contiguous())
        return out

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            td.all_reduce(t)
        return t

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any rank."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.comm_device)
        td.all_reduce(t)
        return bool(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            td.barrier()

    def reduce_logs(self, logs: dict, tokens: int) -> tuple[dict, int]:
        """Sum the logged terms and token counts of a step over ranks (a no-op for one process)."""
        if self.world == 1:
            return logs, tokens
        gathered = [None] * self.world
        td.all_gather_object(gathered, (logs, tokens))
        merged: dict = {}
        for part, _ in gathered:
            for k, v in part.items():
                merged[k] = merged.get(k, 0.0) + v
        return merged, sum(t for _, t in gathered)

    def sync_state(self, state: dict, seen_ids: list) -> None:
        """Share the per-example entries of the method state (dicts keyed by example id) that this
        step changed; entries come from the rank that computed them, in rank order."""
        if self.world == 1 or not state:
            return
        mine = {name: {i: d[i] for i in seen_ids if i in d} for name, d in state.items() if isinstance(d, dict)}
        gathered = [None] * self.world
        td.all_gather_object(gathered, mine)
        for part in gathered:
            for name, entries in part.items():
                state[name].update(entries)
