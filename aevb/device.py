"""Where the tensors live: CUDA, then Apple's MPS, then the CPU, unless told otherwise."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """The best available device: CUDA, then MPS, then CPU (``AEVB_DEVICE`` overrides)."""
    forced = os.environ.get("AEVB_DEVICE")
    if forced:
        return resolve_device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Turn ``None``/``"auto"``/a name into a usable :class:`torch.device`, or explain why not."""
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return default_device()
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:0' or 'mps'"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available; use 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available; use 'cpu'")
    return dev
