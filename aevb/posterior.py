"""Posterior inference for one datapoint at a time, against the amortized encoder (Section 2.1).

The paper's recognition model q_φ(z|x) answers every x with one forward pass: its parameters
are shared by all datapoints (*amortized* inference). The older alternatives spend compute on
each x separately, on the *same* trained decoder p_θ(x|z):

- a separate Gaussian q(z) = N(μ, diag σ²) per datapoint, its (μ, log σ²) optimized by
  stochastic gradient ascent on the bound L (eq. 3, estimated as in eq. 7, the KL analytic);
- Hamiltonian Monte Carlo on the unnormalised posterior p_θ(z|x) ∝ p_θ(z) p_θ(x|z)
  (:mod:`aevb.hmc`), asymptotically exact.

Everything is batched over datapoints, but nothing is shared between them: each row of μ and
log σ² has its own bound, and Adam scales every coordinate separately, so optimizing n rows at
once is n independent optimizations run side by side.

A *likelihood* here is any function ``log_lik(z) -> (..., n)`` for z of shape (..., n, z_dim):
the decoder's ``log p_θ(x|z)`` for inference given x, or a corrupted observation's likelihood
for the marginal inference of :mod:`aevb.marginal_inference`. The prior is N(0, I) throughout.

For a 2-D latent the exact posterior is available on a grid: :func:`grid_posterior` and
:class:`GridPosterior` are those of :mod:`aevb.intractable`, re-exported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.distributions import Independent, Normal

from ._checks import (
    check_finite,
    check_gaussian_params,
    check_model_data,
    check_positive_int,
)
from .bound import gaussian_kl
from .hmc import HMCResult, _posterior_log_prob, hmc
from .intractable import GridPosterior, grid_posterior, log_joint

LogLik = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "GaussianPosterior",
    "GridPosterior",
    "HMCPosterior",
    "amortized_posterior",
    "decoder_log_lik",
    "gaussian_bound",
    "grid_posterior",
    "local_grid_posterior",
    "hmc_posterior",
    "importance_log_evidence",
    "moment_agreement",
    "optimize_gaussian_posterior",
]


def decoder_log_lik(model, x: torch.Tensor) -> LogLik:
    """z ↦ log p_θ(x|z) for the batch ``x`` (n, x_dim): the likelihood of eq. 3's second term.

    ``x`` is checked once, here, as by :func:`aevb.bound.elbo`.
    """
    check_model_data(model, x)

    def log_lik(z: torch.Tensor) -> torch.Tensor:
        return model.decoder(z).log_prob(x)

    return log_lik


@dataclass
class GaussianPosterior:
    """A Gaussian q(z) = N(μ, diag exp(log_var)) per datapoint, with how it was obtained.

    ``trace_steps``, ``trace_seconds`` and ``trace_bound`` record the optimization: after
    ``trace_steps[i]`` gradient steps, taking ``trace_seconds[i]`` seconds in all (for the whole
    batch; evaluation excluded), the bound per datapoint was ``trace_bound[i]`` (n,) nats.
    ``trace_mu`` holds μ at those points (for measuring agreement with a reference posterior).
    """

    mu: torch.Tensor
    log_var: torch.Tensor
    seconds: float = 0.0
    trace_steps: list[int] = field(default_factory=list)
    trace_seconds: list[float] = field(default_factory=list)
    trace_bound: list[torch.Tensor] = field(default_factory=list)
    trace_mu: list[torch.Tensor] = field(default_factory=list)
    trace_log_var: list[torch.Tensor] = field(default_factory=list)

    @property
    def n(self) -> int:
        """The number of datapoints."""
        return int(self.mu.shape[0])

    def distribution(self) -> Independent:
        """q as ``Independent(Normal(μ, σ), 1)``, one distribution per datapoint."""
        return Independent(Normal(self.mu, torch.exp(0.5 * self.log_var)), 1)

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """k draws per datapoint, shape (k, n, z_dim)."""
        check_positive_int(k, "k")
        eps = torch.randn((k, *self.mu.shape), generator=generator, dtype=self.mu.dtype)
        return self.mu + torch.exp(0.5 * self.log_var) * eps.to(self.mu.device)


def gaussian_bound(
    log_lik: LogLik,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    L: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The bound L = −KL(q||N(0, I)) + E_q[log p(x|z)] per datapoint (eqs. 3 and 7), shape (n,).

    The KL is analytic (Appendix B); the expectation uses L reparameterized draws
    z = μ + σ ⊙ ε (eq. 4), so the result is differentiable in μ and log_var. ``mu`` and
    ``log_var`` are finite (n, z_dim) tensors (a clear error otherwise).
    """
    check_positive_int(L, "L")
    check_gaussian_params(mu, log_var)
    return _gaussian_bound(log_lik, mu, log_var, L, generator)


def _gaussian_bound(
    log_lik: LogLik,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    L: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    eps = torch.randn((L, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
    z = mu + torch.exp(0.5 * log_var) * eps
    return log_lik(z).mean(0) - gaussian_kl(mu, log_var)


def _trace_points(steps: int, n_points: int) -> list[int]:
    """About ``n_points`` log-spaced step counts in [0, steps], always with 0 and ``steps``."""
    if steps == 0:
        return [0]
    pts = torch.logspace(0, math.log10(steps), max(n_points - 1, 1), dtype=torch.float64)
    return sorted({0, steps, *(int(round(float(p))) for p in pts)})


class _Adam:
    """Adam (Kingma & Ba, 2015) for a few tensors, written out; the step size decays
    geometrically from ``lr`` to ``final_lr`` over ``steps`` steps. (Gradients come from
    :func:`torch.autograd.grad`, so the decoder's own ``.grad`` is never touched.)"""

    def __init__(self, params, lr, final_lr, steps, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = list(params), lr, betas, eps, 0
        self.decay = (final_lr / lr) ** (1.0 / max(steps, 1))
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads) -> None:
        """One step down the loss whose gradients are ``grads``."""
        self.t += 1
        b1, b2 = self.betas
        grads = list(grads)
        torch._foreach_mul_(self.m, b1)
        torch._foreach_add_(self.m, grads, alpha=1 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(1 - b2**self.t))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-self.lr / (1 - b1**self.t))
        self.lr *= self.decay


def optimize_gaussian_posterior(
    log_lik: LogLik,
    mu0: torch.Tensor,
    log_var0: torch.Tensor,
    steps: int,
    *,
    lr: float = 0.05,
    final_lr: float = 0.005,
    L: int = 1,
    eval_L: int = 16,
    n_trace: int = 12,
    seed: int = 0,
) -> GaussianPosterior:
    """A separate Gaussian q per datapoint, fitted by stochastic gradient ascent on the bound.

    Starts from (``mu0``, ``log_var0``), each (n, z_dim) — the prior (zeros) for inference from
    scratch, or the encoder's output for a refined amortized guess — and takes ``steps`` Adam
    steps on Σ_i L̃(x_i) with L samples per step (eq. 7's estimator, one set of variational
    parameters per datapoint instead of a shared encoder). The step size decays geometrically
    from ``lr`` to ``final_lr``, so the noisy gradients settle near the optimum. At about
    ``n_trace`` log-spaced steps the bound is evaluated with ``eval_L`` draws of fixed noise
    (so traces compare like with like); evaluation time is not counted in ``trace_seconds``.
    """
    check_gaussian_params(mu0, log_var0, ("mu0", "log_var0"))
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    check_positive_int(L, "L")
    check_positive_int(eval_L, "eval_L")
    mu = mu0.detach().clone().requires_grad_(True)
    log_var = log_var0.detach().clone().requires_grad_(True)
    adam = _Adam([mu, log_var], lr=lr, final_lr=final_lr, steps=steps)
    gen = torch.Generator().manual_seed(seed)
    eval_seed = seed + 1
    points = _trace_points(steps, n_trace)
    out = GaussianPosterior(mu.detach().clone(), log_var.detach().clone())
    spent = 0.0

    def record(step: int) -> None:
        with torch.no_grad():
            b = _gaussian_bound(
                log_lik, mu, log_var, eval_L, torch.Generator().manual_seed(eval_seed)
            )
        out.trace_steps.append(step)
        out.trace_seconds.append(spent)
        out.trace_bound.append(b.detach().clone())
        out.trace_mu.append(mu.detach().clone())
        out.trace_log_var.append(log_var.detach().clone())

    if 0 in points:
        record(0)
    for step in range(1, steps + 1):
        start = time.perf_counter()
        loss = -_gaussian_bound(log_lik, mu, log_var, L, gen).sum()
        adam.step(torch.autograd.grad(loss, [mu, log_var]))
        spent += time.perf_counter() - start
        if step in points:
            record(step)
    out.mu, out.log_var, out.seconds = mu.detach().clone(), log_var.detach().clone(), spent
    return out


@torch.no_grad()
def amortized_posterior(model, x: torch.Tensor, repeats: int = 5) -> GaussianPosterior:
    """q_φ(z|x) from the encoder: one forward pass for the whole batch.

    ``seconds`` is the fastest of ``repeats`` timed passes after one untimed warm-up pass
    (the first call into a network pays one-off costs that are not inference).
    """
    check_positive_int(repeats, "repeats")
    check_model_data(model, x)
    mu, log_var = model.encoder.params(x)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        mu, log_var = model.encoder.params(x)
        best = min(best, time.perf_counter() - start)
    return GaussianPosterior(mu.clone(), log_var.clone(), seconds=best)


@dataclass
class HMCPosterior:
    """HMC draws from p_θ(z|x): samples (n_samples, n, z_dim), acceptance (n,), seconds."""

    samples: torch.Tensor
    acceptance: torch.Tensor
    step_size: torch.Tensor
    seconds: float

    def mean(self) -> torch.Tensor:
        """The posterior mean estimate per datapoint, (n, z_dim)."""
        return self.samples.mean(0)

    def std(self) -> torch.Tensor:
        """The posterior standard deviation estimate per datapoint, (n, z_dim)."""
        return self.samples.std(0)


def hmc_posterior(
    model,
    x: torch.Tensor,
    n_samples: int,
    *,
    warmup: int | None = None,
    z0: torch.Tensor | None = None,
    precondition: bool = False,
    n_leapfrog: int = 10,
    step_size: float = 0.1,
    target_accept: float = 0.9,
    seed: int = 0,
) -> HMCPosterior:
    """``n_samples`` HMC draws per datapoint from p_θ(z|x) ∝ p_θ(z) p_θ(x|z), one chain each.

    Chains start at ``z0`` (default: the encoder's mean, a good guess that shortens warm-up)
    and adapt their step sizes during ``warmup`` transitions (default ``n_samples``).

    With ``precondition=True`` the chains run in the encoder's whitened coordinates
    u = (z − μ_φ(x)) / σ_φ(x): the target p(z|x) is unchanged (the map is affine, its
    Jacobian a constant), but its scales are roughly equalised, so one step size suits every
    dimension — HMC with a diagonal mass matrix supplied by the amortized encoder. Samples are
    returned in z.
    """
    check_positive_int(n_samples, "n_samples")
    check_model_data(model, x)
    warmup = n_samples if warmup is None else warmup
    with torch.no_grad():
        q = model.encoder(x)
        loc, scale = q.mean, q.stddev
    if z0 is None:
        z0 = loc
    elif not isinstance(z0, torch.Tensor) or z0.shape != loc.shape:
        shape = tuple(z0.shape) if isinstance(z0, torch.Tensor) else type(z0).__name__
        raise ValueError(
            f"z0 is {shape}; expected {tuple(loc.shape)}: one starting point (z_dim,) per row "
            "of x, or None for the encoder's mean"
        )
    else:
        check_finite(z0, "z0", "start the chains at finite points")
    log_joint = _posterior_log_prob(model, x)  # x was checked above
    if precondition:

        def target(u: torch.Tensor) -> torch.Tensor:
            return log_joint(loc + scale * u)

        start_state = (z0 - loc) / scale
    else:
        target, start_state = log_joint, z0
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    res: HMCResult = hmc(
        target,
        start_state,
        n_samples,
        n_leapfrog=n_leapfrog,
        step_size=step_size,
        warmup=warmup,
        target_accept=target_accept,
        generator=gen,
    )
    seconds = time.perf_counter() - start
    samples = loc + scale * res.samples if precondition else res.samples
    return HMCPosterior(samples, res.acceptance, res.step_size, seconds)


def moment_agreement(
    mu: torch.Tensor, log_var: torch.Tensor, samples: torch.Tensor
) -> dict[str, torch.Tensor]:
    """How well a Gaussian q matches a reference posterior given by samples (s, n, z_dim).

    Returns per datapoint (n,):

    - ``mean_error``: the root mean square over dimensions of (μ_q − m)/s, the distance of
      q's mean from the reference mean in units of the reference standard deviation;
    - ``log_std_ratio``: the mean over dimensions of log(σ_q / s), negative when q is too
      narrow (the usual failure of KL(q||p), which is zero-forcing).
    """
    check_gaussian_params(mu, log_var)
    if not isinstance(samples, torch.Tensor) or samples.dim() != 3 or samples.shape[0] < 2:
        shape = (
            tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        )
        raise ValueError(
            f"samples is {shape}; expected (s, n, z_dim) with s >= 2 draws (a standard deviation)"
        )
    if samples.shape[1:] != mu.shape:
        raise ValueError(
            f"samples {tuple(samples.shape)} do not match mu {tuple(mu.shape)}; expected "
            f"(s, {', '.join(map(str, mu.shape))}): the same datapoints and latent dimension"
        )
    m, s = samples.mean(0), samples.std(0).clamp_min(1e-6)
    err = ((mu - m) / s).square().mean(-1).sqrt()
    ratio = (0.5 * log_var - s.log()).mean(-1)
    return {"mean_error": err, "log_std_ratio": ratio}


@torch.no_grad()
def importance_log_evidence(
    log_lik: LogLik,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    k: int,
    *,
    chunk: int = 250,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """log p(x) ≈ log (1/k) Σ_s p(x|z_s) p(z_s) / q(z_s), z_s ~ q = N(μ, diag σ²); shape (n,).

    The importance-sampling estimator of :mod:`aevb.marginal` with any Gaussian proposal (for
    example a per-datapoint q fitted by :func:`optimize_gaussian_posterior`), k draws taken
    ``chunk`` at a time and combined exactly by log-sum-exp. ``mu`` and ``log_var`` are finite
    (n, z_dim) tensors (a clear error otherwise).
    """
    check_positive_int(k, "k")
    check_positive_int(chunk, "chunk")
    check_gaussian_params(mu, log_var)
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    parts, remaining = [], k
    while remaining > 0:
        c = min(chunk, remaining)
        eps = torch.randn((c, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + torch.exp(0.5 * log_var) * eps
        parts.append(torch.logsumexp(log_lik(z) + prior.log_prob(z) - q.log_prob(z), dim=0))
        remaining -= c
    return torch.logsumexp(torch.stack(parts), dim=0) - math.log(k)


@torch.no_grad()
def local_grid_posterior(
    model,
    x: torch.Tensor,
    center: torch.Tensor,
    half_width: torch.Tensor,
    points: int = 101,
) -> list[GridPosterior]:
    """The exact posterior of a 2-D (or 1-, 3-D) latent on a grid fitted to each datapoint.

    A trained VAE's posteriors are often far narrower than the prior, so a fixed grid over
    [−4, 4]² (:func:`grid_posterior`) would need very many points to resolve them. Here
    datapoint i gets its own midpoint grid of ``points`` nodes per axis over
    ``center[i] ± half_width[i]`` (e.g. the encoder's mean ± 8 of its standard deviations).
    Returns one :class:`GridPosterior` (batch of one) per datapoint, with log p_θ(x_i) by
    quadrature, the normalised density, and :meth:`GridPosterior.kl_from` for any Gaussian q.
    """
    check_positive_int(points, "points")
    check_model_data(model, x)
    z_dim = int(model.prior().event_shape[-1])
    check_gaussian_params(center, half_width, ("center", "half_width"))
    if center.shape != (x.shape[0], z_dim):
        raise ValueError(
            f"center {tuple(center.shape)} and half_width {tuple(half_width.shape)} must be "
            f"({x.shape[0]}, {z_dim}): one grid per row of x, in the model's N_z = {z_dim}"
        )
    if float(half_width.min()) <= 0:
        raise ValueError("half_width must be > 0 everywhere; e.g. 8 x the encoder's std")
    out = []
    for i in range(x.shape[0]):
        axes, log_dv = [], 0.0
        for d in range(z_dim):
            hw = float(half_width[i, d])
            h = 2.0 * hw / points
            c = float(center[i, d])
            axes.append(torch.linspace(c - hw + h / 2, c + hw - h / 2, points))
            log_dv += math.log(h)
        z = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, z_dim)
        lj = log_joint(model, x[i : i + 1], z.to(x.dtype)).double()
        log_px = torch.logsumexp(lj, dim=0) + log_dv
        out.append(GridPosterior(z, lj - log_px, log_px, log_dv))
    return out
