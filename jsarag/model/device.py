"""Which device a job runs on: `device: auto | cpu | cuda` in the index and train sections.

auto takes a GPU when CUDA is present and the CPU otherwise; cuda insists on a GPU and stops with a
clear error when none is present, so that a GPU config never trains silently on the CPU.

A GPU is always named with its index, `cuda:{local_rank}`: under torchrun every rank sees every GPU
of its node, and a bare "cuda" means the current device, which is GPU 0 in every rank until
`torch.cuda.set_device` runs. `placement` is the one function that decides; every `.to`, device map,
index block and `torch.load` of the package takes its answer."""
from __future__ import annotations

import os

from jsarag import InputError

DEVICES = ("auto", "cpu", "cuda")


def placement(requested: str, local_rank: int, cuda_available: bool, visible: int, where: str = "device") -> str:
    """'cpu' or 'cuda:{local_rank}' for a configured device, decided from the facts alone (testable
    without a GPU). A local rank without a GPU of its own is refused: two ranks on one GPU would
    double its memory, and NCCL refuses a device shared by two ranks of one group."""
    if requested not in DEVICES:
        raise InputError(f"{where}: must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "cpu" or (requested == "auto" and not cuda_available):
        return "cpu"
    if not cuda_available:
        import torch

        raise InputError(f"{where}: cuda asked for, but no CUDA device is present (torch {torch.__version__}, "
                         f"CUDA build {torch.version.cuda or 'none'}); set {where}: cpu or auto to run on the CPU")
    if not 0 <= local_rank < visible:
        raise InputError(f"{where}: local rank {local_rank} has no GPU of its own ({visible} visible; "
                         f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
                         f"start at most {visible} processes per node")
    return f"cuda:{local_rank}"


def local_rank() -> int:
    """This process's rank on its node (torchrun's LOCAL_RANK; 0 for a single process)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(requested: str, where: str = "device", rank: int | None = None) -> str:
    """'cpu' or 'cuda:N' for a configured device, N = this process's local rank."""
    import torch

    cuda = torch.cuda.is_available()
    return placement(requested, local_rank() if rank is None else rank, cuda, torch.cuda.device_count() if cuda else 0, where)


def is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def compute_dtype(device: str):
    """bf16 on a GPU, fp32 on the CPU."""
    import torch

    return torch.bfloat16 if is_cuda(device) else torch.float32


def autocast(device):
    """bf16 autocast on a GPU (matmuls in bf16, fp32 master weights); nothing on the CPU, which
    computes in fp32."""
    import contextlib

    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if is_cuda(device) else contextlib.nullcontext()
