"""Choosing the torch device."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; other names are checked.

    Raises
    ------
    ValueError
        For an unknown name, or a device this machine does not have.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device)
    base = name.split(":")[0]
    if base not in DEVICES:
        raise ValueError(f"The 'device' parameter must be one of {DEVICES} (optionally 'cuda:N'). Got {device!r} instead.")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA device here.")
    if base == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} was asked for, but Apple MPS is not available here.")
    return torch.device(name)
