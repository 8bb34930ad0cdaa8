"""Choosing the torch device."""

from __future__ import annotations

import platform
import warnings

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


def _cpu_has(check: str) -> bool:
    """torch's own probe of an x86 instruction set (``torch.cpu._is_<check>_supported``); True where torch has none."""
    probe = getattr(torch.cpu, f"_is_{check}_supported", None)
    return True if probe is None else bool(probe())


def warn_if_slow_on_cpu(dtype: torch.dtype, device: torch.device) -> None:
    """Warn when the LLM is to run in bf16 or fp16 on an x86 CPU without instructions for that precision.

    There the half-precision matrix products take slow paths: bf16 was measured about 15 times slower than fp32 on
    an AVX2 CPU (docs/benchmarks.md, "Alignment speed by device"), while CPUs with AVX512-BF16 or AMX run it faster.
    Other architectures are not checked.
    """
    if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return
    if dtype == torch.bfloat16:
        fast, units = _cpu_has("avx512_bf16") or _cpu_has("amx_tile"), "AVX512-BF16 or AMX"
    elif dtype == torch.float16:
        fast, units = _cpu_has("amx_fp16"), "AMX-FP16"
    else:
        return
    if not fast:
        name = str(dtype).removeprefix("torch.")
        warnings.warn(f"llm_dtype={name!r} on a CPU without {name} instructions ({units}): the LLM "
                      f"runs many times slower there than in float32; use llm_dtype='float32' (what "
                      f"'auto' picks on a CPU).", UserWarning, stacklevel=3)
