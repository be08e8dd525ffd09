"""Which device a job runs on: `device: auto | cpu | cuda` in the index and train sections.

auto takes a GPU when CUDA is present and the CPU otherwise; cuda insists on a GPU and stops with a
clear error when none is present, so that a GPU config never trains silently on the CPU."""
from __future__ import annotations

from jsarag import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str, where: str = "device") -> str:
    """'cpu' or 'cuda' for a configured device."""
    import torch

    if requested not in DEVICES:
        raise InputError(f"{where}: must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise InputError(f"{where}: cuda asked for, but no CUDA device is present (torch {torch.__version__}, "
                         f"CUDA build {torch.version.cuda or 'none'}); set {where}: cpu or auto to run on the CPU")
    return "cpu"


def compute_dtype(device: str):
    """bf16 on a GPU, fp32 on the CPU."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32
