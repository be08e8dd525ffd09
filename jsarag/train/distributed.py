"""Data-parallel training: one process per GPU (torchrun), or 2 gloo processes on a CPU (tests).

The arithmetic of the single-process loop is kept: an optimizer step still covers `grad_accum`
micro-batches of `batch_size` examples, in the same order. With W processes, micro-batch j of a
step goes to rank j mod W, so each rank accumulates grad_accum / W micro-batches, each loss scaled
by 1 / grad_accum; summing the gradients over ranks (all-reduce, as DDP does) gives the
single-process gradient. Every rank then clips and steps on the same gradient, so the weights stay
equal without a broadcast. What else must agree across ranks:
- the logged terms of a step: summed over ranks, rank 0 writes the log;
- the method state (JSA's MIS cache, example id -> passage row): after each step every rank sends
  the entries of the examples it saw, and all ranks apply them (all-gather);
- random draws (MIS proposals, sampled VRAG): the trainer's sampler is reseeded per micro-batch
  from (seed, micro-batch index), so a draw does not depend on which rank makes it;
- checkpoints: rank 0 writes, the others wait at a barrier; on restart every rank loads the same file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as td


@dataclass
class DataParallel:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    per_micro_seed: bool = False  # reseed the sampler per micro-batch (always on when world > 1)

    @classmethod
    def from_env(cls) -> DataParallel:
        """The process group of torchrun (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT); a single
        process when WORLD_SIZE is unset or 1. NCCL on GPUs, gloo on CPUs."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not td.is_initialized():
            cuda = torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(local)  # "cuda" now means this rank's GPU: it encodes and retrieves there
            td.init_process_group("nccl" if cuda else "gloo")
        return cls(world=world, rank=rank, local_rank=local, per_micro_seed=True)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_accum(self, grad_accum: int) -> int:
        if grad_accum % self.world:
            raise ValueError(f"train.common.grad_accum ({grad_accum}) must be a multiple of the number of processes ({self.world})")
        return grad_accum // self.world

    def mine(self, micro: int, grad_accum: int) -> bool:
        """Whether this rank computes micro-batch `micro` (a global index)."""
        return (micro % grad_accum) % self.world == self.rank

    def seed_sampler(self, sampler: torch.Generator, seed: int, micro: int) -> None:
        if self.per_micro_seed:
            sampler.manual_seed((seed + 1) * 1_000_003 + micro)

    @property
    def device(self) -> str:
        return "cuda" if self.world > 1 and td.get_backend() == "nccl" else "cpu"

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any rank."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        td.all_reduce(t)
        return bool(t.item())

    def broadcast(self, params: list) -> None:
        """Rank 0's values of `params` on every rank (freshly initialized LoRA weights differ)."""
        if self.world > 1:
            for p in params:
                td.broadcast(p.data, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            td.barrier()

    def reduce_step(self, params: list, logs: dict, tokens: int) -> tuple[dict, int]:
        """Sum gradients, logged terms and token counts over ranks (a no-op for one process)."""
        if self.world == 1:
            return logs, tokens
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads]).to(self.device)
        td.all_reduce(flat)
        i = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[i:i + n].view_as(g).to(g.device, g.dtype)
            i += n
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
