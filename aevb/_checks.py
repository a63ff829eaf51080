"""Input checks shared by the package: each error names the fix."""

from __future__ import annotations

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
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} holds {bad} non-finite values (NaN or inf); clean the data first")
    if unit_interval and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} has values in [{float(x.min()):.3g}, {float(x.max()):.3g}], but a Bernoulli "
            "decoder needs pixel intensities in [0, 1]: divide by 255, or use a Gaussian decoder"
        )


def check_positive_int(value: int, name: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise an error that says so."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value
