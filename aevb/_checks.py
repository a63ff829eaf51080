"""Input checks shared by the package: each error names the fix."""

from __future__ import annotations

import math

import torch


def check_data(x: torch.Tensor, dim: int, *, name: str = "x", unit_interval: bool = False) -> None:
    """Raise a clear error unless ``x`` is a finite float tensor of shape (batch, dim)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}; use torch.as_tensor"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} has dtype {x.dtype}; pass floating point values, e.g. {name}.float() / 255"
        )
    if x.dim() != 2 or x.shape[-1] != dim:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; expected (batch, {dim}). "
            f"Flatten images first: {name}.reshape(len({name}), -1)"
        )
    if x.numel() == 0:
        return
    # One pass over the data: a NaN makes both extremes NaN, an infinity one of them infinite.
    low, high = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} holds {bad} non-finite values (NaN or inf); clean the data first")
    if unit_interval and (low < 0 or high > 1):
        raise ValueError(
            f"{name} has values in [{low:.3g}, {high:.3g}], but a Bernoulli "
            "decoder needs pixel intensities in [0, 1]: divide by 255, or use a Gaussian decoder"
        )


def check_positive_int(value: int, name: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise an error that says so."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value
