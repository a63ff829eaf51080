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

from ._checks import check_positive_int

LogProb = Callable[[torch.Tensor], torch.Tensor]


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
    """
    check_positive_int(n_samples, "n_samples")
    check_positive_int(n_leapfrog, "n_leapfrog")
    if z0.dim() != 2:
        raise ValueError(f"z0 has shape {tuple(z0.shape)}; expected (chains, z_dim)")
    z = z0.detach().clone()
    chains = z.shape[0]
    step = torch.full((chains, 1), float(step_size), dtype=z.dtype, device=z.device)
    lp, _ = _grad(log_prob, z)
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


def posterior_log_prob(model, x: torch.Tensor) -> LogProb:
    """z ↦ log p_θ(x, z) = log p_θ(z) + log p_θ(x|z): the unnormalised posterior of z given x."""

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        return model.prior().log_prob(z) + model.decoder(z).log_prob(x)

    return log_prob
