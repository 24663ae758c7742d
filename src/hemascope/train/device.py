"""Where a training run computes: the CPU by default, a CUDA GPU when one is asked for.

Every trainer takes ``device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``). ``auto`` picks
the first GPU when PyTorch sees one and the CPU otherwise, so the same command trains on a
laptop and on a GPU server. On a GPU the forward and backward passes run under bfloat16
autocast; weights, optimiser state and the EMA stay float32, and random draws stay on the
CPU generator, so a seed means the same augmentation on either device.
"""

from __future__ import annotations

import contextlib
import platform

import torch

from hemascope.errors import HemascopeError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; a named GPU must exist.

    Raises:
        HemascopeError: an unknown name, or a GPU asked for where PyTorch sees none.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise HemascopeError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HemascopeError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU here; "
                                 "use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise HemascopeError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) here")
    elif dev.type != "cpu":
        raise HemascopeError(f"device {name!r} is not supported (auto, cpu, cuda, cuda:N)")
    return dev


def autocast(device: torch.device):
    """bfloat16 autocast on a GPU; a no-op context on the CPU (float32 there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe(device: torch.device | None = None, *, mixed: bool = True) -> str:
    """What the model card records as the training device (``mixed``: the run used
    bfloat16 autocast on the GPU)."""
    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} GPU" + (" (bfloat16 autocast)" if mixed else "")
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def module_device(model: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without any)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
