"""Hybrid (Hamiltonian) Monte Carlo over latent variables, one chain per datapoint.

Used for the Monte Carlo EM baseline (Appendix E), for the paper's marginal likelihood
estimator (Appendix D) and for per-datapoint posterior inference. Chains are batched: ``z``
has shape (chains, z_dim) and ``log_prob(z)`` returns (chains,). During warm-up each chain's
step size is adapted towards a target acceptance rate (the paper tuned it to about 90%).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._checks import check_finite, check_model_data, check_positive_int, check_positive_number

LogProb = Callable[[torch.Tensor], torch.Tensor]


def _check_log_prob(log_prob: LogProb) -> None:
    if not callable(log_prob):
        raise TypeError(
            f"log_prob must be a function z -> log density (one value per chain), got "
            f"{type(log_prob).__name__}; e.g. posterior_log_prob(model, x)"
        )


def _check_start(z0: torch.Tensor, log_prob: LogProb, name: str = "z0") -> None:
    """Starting states: a finite float (chains, z_dim) tensor, one row per chain, as many as
    the datapoints ``log_prob`` was built for, in its N_z (when it says so, as the functions
    of :func:`posterior_log_prob` do)."""
    if not isinstance(z0, torch.Tensor) or not z0.is_floating_point():
        got = z0.dtype if isinstance(z0, torch.Tensor) else type(z0).__name__
        raise TypeError(f"{name} must be a float tensor (chains, z_dim), got {got}; e.g. zeros")
    if z0.dim() != 2 or z0.shape[0] == 0:
        raise ValueError(
            f"{name} has shape {tuple(z0.shape)}; expected (chains, z_dim) with chains >= 1: "
            f"one starting point per chain (for one chain use {name}[None])"
        )
    z_dim = getattr(log_prob, "z_dim", None)
    if z_dim is not None and z0.shape[1] != z_dim:
        raise ValueError(
            f"{name} has shape {tuple(z0.shape)}; expected ({z0.shape[0]}, {z_dim}): the "
            f"model's N_z = {z_dim} latent coordinates per chain"
        )
    n = getattr(log_prob, "datapoints", None)
    if n is not None and n != 1 and z0.shape[0] != n:
        raise ValueError(
            f"{name} has {z0.shape[0]} rows but log_prob was built for {n} datapoints; start "
            f"one chain per datapoint: {name} of shape ({n}, {z0.shape[1]})"
        )
    check_finite(z0, name, "start the chains at finite points, e.g. zeros (the prior mean)")


def _check_fraction(value: float, name: str, *, closed_low: bool, example: str) -> float:
    """A number in [0, 1) (``closed_low``) or (0, 1), or a clear error."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0 <= value < 1 if closed_low else 0 < value < 1)
    if not ok:
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise ValueError(f"{name}={value!r}; use a value in {interval}, e.g. {example}")
    return float(value)


def _check_step_size(step_size: float, name: str = "step_size") -> float:
    return check_positive_number(step_size, name, "a positive step size, e.g. 0.1")


def _check_count(value: int, name: str) -> int:
    """An integer >= 0 (a number of transitions that may be zero)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _grad(log_prob: LogProb, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        lp = log_prob(z)
        (g,) = torch.autograd.grad(lp.sum(), z)
    return lp.detach(), g.detach()


def leapfrog(
    log_prob: LogProb, z: torch.Tensor, p: torch.Tensor, step: torch.Tensor, n_steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_steps`` leapfrog steps of size ``step`` (per chain, shape (chains, 1)).

    Returns the final position, momentum, log-density and its gradient.
    """
    lp, g = _grad(log_prob, z)
    p = p + 0.5 * step * g
    for i in range(n_steps):
        z = z + step * p
        lp, g = _grad(log_prob, z)
        if i < n_steps - 1:
            p = p + step * g
    p = p + 0.5 * step * g
    return z, p, lp, g


@dataclass
class HMCResult:
    """Samples (n_samples, chains, z_dim), per-chain acceptance rate and final step sizes."""

    samples: torch.Tensor
    acceptance: torch.Tensor
    step_size: torch.Tensor


def hmc(
    log_prob: LogProb,
    z0: torch.Tensor,
    n_samples: int,
    *,
    n_leapfrog: int = 10,
    step_size: float = 0.1,
    warmup: int = 50,
    target_accept: float = 0.9,
    thin: int = 1,
    jitter: float = 0.2,
    generator: torch.Generator | None = None,
) -> HMCResult:
    """Draw ``n_samples`` states per chain from exp(log_prob) by HMC with unit mass.

    The first ``warmup`` transitions adapt each chain's step size multiplicatively towards
    ``target_accept`` and are discarded. Each kept sample is ``thin`` transitions apart. Each
    transition's step size is jittered uniformly by ±``jitter`` (Neal, 2011, Section 5.4.2.2),
    so a trajectory cannot lock onto a period of the target and stop mixing.

    Everything is checked once, here: ``z0`` is a finite float (chains, z_dim) tensor and
    ``log_prob(z0)`` must give one finite value per chain (a clear error otherwise).
    """
    _check_log_prob(log_prob)
    check_positive_int(n_samples, "n_samples")
    check_positive_int(n_leapfrog, "n_leapfrog")
    check_positive_int(thin, "thin")
    _check_count(warmup, "warmup")
    _check_step_size(step_size)
    _check_fraction(target_accept, "target_accept", closed_low=False, example="0.9")
    _check_fraction(jitter, "jitter", closed_low=True, example="0.2")
    _check_start(z0, log_prob)
    z = z0.detach().clone()
    chains = z.shape[0]
    step = torch.full((chains, 1), float(step_size), dtype=z.dtype, device=z.device)
    lp, _ = _grad(log_prob, z)
    _check_start_density(lp, chains)
    kept, accepted = [], torch.zeros(chains, device=z.device)
    total = warmup + n_samples * thin
    for t in range(total):
        p0 = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
        scale = 1.0 + jitter * (2 * torch.rand(chains, 1, generator=generator, dtype=z.dtype) - 1)
        z_new, p_new, lp_new, _ = leapfrog(log_prob, z, p0, step * scale.to(z.device), n_leapfrog)
        log_ratio = (lp_new - 0.5 * p_new.square().sum(-1)) - (lp - 0.5 * p0.square().sum(-1))
        log_ratio = torch.nan_to_num(log_ratio, nan=-float("inf"))
        u = torch.rand(chains, generator=generator, dtype=z.dtype).to(z.device)
        accept = u.log() < log_ratio
        z = torch.where(accept[:, None], z_new, z)
        lp = torch.where(accept, lp_new, lp)
        if t < warmup:
            rate = log_ratio.clamp(max=0).exp()
            step = step * torch.exp(0.5 * (rate - target_accept))[:, None]
        else:
            accepted += accept.float()
            if (t - warmup + 1) % thin == 0:
                kept.append(z.clone())
    return HMCResult(torch.stack(kept), accepted / (n_samples * thin), step.squeeze(-1))


def _check_start_density(lp: torch.Tensor, chains: int) -> None:
    """log_prob at the starting states: one finite value per chain."""
    if not isinstance(lp, torch.Tensor) or lp.shape != (chains,):
        got = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
        raise ValueError(
            f"log_prob(z0) has shape {got}; expected ({chains},), one log density per chain: "
            "log_prob must sum over the latent dimensions and keep the chains apart"
        )
    bad = ~torch.isfinite(lp)
    if bool(bad.any()):
        raise ValueError(
            f"log_prob(z0) is not finite (NaN or inf) for {int(bad.sum())} of {chains} chains "
            f"(the first: {int(bad.nonzero()[0])}); start the chains where the density is "
            "positive and finite, e.g. zeros (the prior mean), and check the data"
        )


def posterior_log_prob(model, x: torch.Tensor) -> LogProb:
    """z ↦ log p_θ(x, z) = log p_θ(z) + log p_θ(x|z): the unnormalised posterior of z given x.

    ``x`` (batch, x_dim) is checked once, here (the model's ``check_input`` when it has one).
    The function evaluates one chain per datapoint (z of shape (batch, z_dim)), or any number
    of chains for a single datapoint.
    """
    check_model_data(model, x)
    return _posterior_log_prob(model, x)


def _posterior_log_prob(model, x: torch.Tensor) -> LogProb:
    """:func:`posterior_log_prob` without the check (for loops that checked ``x`` once)."""

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        return model.prior().log_prob(z) + model.decoder(z).log_prob(x)

    # Read by hmc() to check its starting states before the first evaluation.
    log_prob.datapoints = int(x.shape[0])  # type: ignore[attr-defined]
    log_prob.z_dim = int(model.prior().event_shape[0])  # type: ignore[attr-defined]
    return log_prob
