"""Input checks shared by the package: each error names the fix.

Two kinds: :func:`check_data` and :func:`check_model_data` make one pass over the values (one
``torch.aminmax``) to refuse NaN and infinities; :func:`check_features` and
:func:`check_latent` look at the type and shape only (no pass over the data), cheap enough for
every forward pass of a network.
"""

from __future__ import annotations

import inspect
import math

import torch


def _check_float_tensor(t: object, name: str, cast: str) -> torch.Tensor:
    """``t`` itself if it is a floating-point tensor; else a TypeError naming the cast."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(t).__name__}; use torch.as_tensor"
        )
    if not t.is_floating_point():
        raise TypeError(f"{name} has dtype {t.dtype}; pass floating point values, e.g. {cast}")
    return t


def check_finite(
    t: torch.Tensor, name: str, fix: str = "clean the data first"
) -> tuple[float, float]:
    """Raise unless every value of the tensor ``t`` is finite; return its (min, max).

    One pass over the data: a NaN makes both extremes NaN, an infinity one of them infinite.
    An empty tensor passes, with extremes (inf, -inf).
    """
    if t.numel() == 0:
        return math.inf, -math.inf
    low, high = torch.aminmax(t.detach() if t.requires_grad else t)
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} holds {bad} non-finite values (NaN or inf); {fix}")
    return low, high


def check_data(
    x: torch.Tensor, dim: int | None, *, name: str = "x", unit_interval: bool = False
) -> None:
    """Raise a clear error unless ``x`` is a finite float tensor of shape (batch, dim).

    ``dim=None`` accepts any number of columns.
    """
    _check_float_tensor(x, name, f"{name}.float() / 255")
    if x.dim() != 2 or (dim is not None and x.shape[-1] != dim):
        expected = f"(batch, {dim})" if dim is not None else "(batch, features)"
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; expected {expected}. "
            f"Flatten images first: {name}.reshape(len({name}), -1)"
        )
    low, high = check_finite(x, name)
    if unit_interval and x.numel() and (low < 0 or high > 1):
        raise ValueError(
            f"{name} has values in [{low:.3g}, {high:.3g}], but a Bernoulli "
            "decoder needs pixel intensities in [0, 1]: divide by 255, or use a Gaussian decoder"
        )


def data_dim(model: object) -> int | None:
    """The data dimension of a model: its ``x_dim``, else its encoder's or decoder's, else None."""
    for part in (model, getattr(model, "encoder", None), getattr(model, "decoder", None)):
        dim = getattr(part, "x_dim", None)
        if isinstance(dim, int):
            return dim
    return None


def check_model_data(model: object, x: torch.Tensor, *, name: str = "x") -> None:
    """Raise a clear error unless ``x`` is a non-empty batch of data for ``model``.

    Uses the model's own ``check_input`` when it has one (a :class:`aevb.models.VAE` also asks
    for [0, 1] under a Bernoulli decoder; ``name`` is passed on if it takes one); otherwise
    checks a finite float (batch, x_dim) tensor, with x_dim from :func:`data_dim` (any width
    if the model names none). One pass over the data.
    """
    check = getattr(model, "check_input", None)
    if callable(check):
        if name != "x" and "name" in inspect.signature(check).parameters:
            check(x, name=name)
        else:
            check(x)
    else:
        check_data(x, data_dim(model), name=name)
    if x.shape[0] == 0:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: no datapoints; pass at least one row")
    check_same_device(model, x, name=name)


def check_same_device(model: object, x: torch.Tensor, *, name: str = "x") -> None:
    """Raise a clear error if ``x`` is not on the device of ``model``'s parameters (a model
    without parameters takes data anywhere). ``fit`` leaves a model on the device it trained
    on, a GPU by default where there is one, while data sets load on the CPU."""
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    if isinstance(first, torch.Tensor) and first.device != x.device:
        raise ValueError(
            f"{name} is on {x.device} but the model is on {first.device}; move one of them, "
            f"e.g. {name}.to({str(first.device)!r}) or model.to({str(x.device)!r})"
        )


def _check_last_dim(t: torch.Tensor, dim: int, name: str, cast: str, expected: str) -> None:
    """Shape and type only (no pass over the data): a float tensor of shape (..., dim)."""
    _check_float_tensor(t, name, cast)
    if t.dim() == 0 or t.shape[-1] != dim:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {expected}")


def check_features(x: torch.Tensor, dim: int, *, name: str = "x") -> None:
    """Shape and type only (no pass over the data): a float tensor of shape (..., dim)."""
    _check_last_dim(
        x,
        dim,
        name,
        f"{name}.float() / 255",
        f"(batch, {dim}). Flatten images first: {name}.reshape(len({name}), -1)",
    )


def check_latent(z: torch.Tensor, dim: int, *, name: str = "z") -> None:
    """Shape and type only (no pass over the data): a float tensor of shape (..., dim)."""
    _check_last_dim(
        z,
        dim,
        name,
        f"{name}.float()",
        f"(..., {dim}): the last dimension holds the model's N_z = {dim} latent coordinates",
    )


def check_positive_number(value: float, name: str, advice: str) -> float:
    """``value`` as a float if it is a finite number > 0 (not a bool), else a ValueError
    ``"{name}={value!r}; use {advice}"``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r}; use {advice}")
    return float(value)


def check_gaussian_params(
    mu: torch.Tensor, log_var: torch.Tensor, names: tuple[str, str] = ("mu", "log_var")
) -> None:
    """Raise unless ``mu`` and ``log_var`` are finite float tensors of one shape (n, z_dim)."""
    m, v = names
    _check_float_tensor(mu, m, f"{m}.float()")
    _check_float_tensor(log_var, v, f"{v}.float()")
    if mu.shape != log_var.shape or mu.dim() != 2:
        raise ValueError(
            f"{m} {tuple(mu.shape)} and {v} {tuple(log_var.shape)} must both be (n, z_dim): "
            "one row per datapoint"
        )
    fix = "start from finite values (e.g. zeros: the prior) or the encoder's output"
    check_finite(mu, m, fix)
    check_finite(log_var, v, fix)


def check_positive_int(value: int, name: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise an error that says so."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value
