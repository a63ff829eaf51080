"""The intractabilities of Section 2.1, computed where they can be: exactly, and at what cost.

For an MLP decoder the marginal likelihood p_θ(x) = ∫ p_θ(z) p_θ(x|z) dz, the true posterior
p_θ(z|x) = p_θ(x|z) p_θ(z)/p_θ(x) and the expectations of mean-field VB have no closed form.
This module computes them anyway, in the two settings where that is possible:

- **Small latent dimension, any decoder: a grid.** The midpoint rule on a grid of ``points``
  nodes per axis over [−limit, limit]^{N_z}:
  log p_θ(x) ≈ logsumexp_g [log p_θ(z_g) + log p_θ(x|z_g)] + log ΔV. It needs ``points^N_z``
  decoder evaluations per datapoint: 10^{1.5·N_z} at 32 points per axis, about 10^30 for the
  paper's N_z = 20. That exponential cost is the point of chapter 1.
- **A linear-Gaussian model: closed forms** (:mod:`aevb.linear_gaussian`) — here the exact
  bound L(θ, φ; x) (eq. 3 with both terms analytic) and KL(q_φ(z|x) || p_θ(z|x)), so that
  eq. 1, log p_θ(x) = KL + L, can be checked to float precision (chapter 2).

:func:`mcem_gradient_evaluations` counts the decoder gradients that a sampling-based Monte
Carlo EM (HMC in the E-step, Appendix E) spends per sweep over the data, against AEVB's one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, MultivariateNormal, kl_divergence

from ._checks import check_positive_int

# ----------------------------------------------------------------------------------------------
# The grid.
# ----------------------------------------------------------------------------------------------


def grid_size(z_dim: int, points: int) -> int:
    """The number of grid nodes (= decoder evaluations per datapoint): ``points ** z_dim``."""
    return check_positive_int(points, "points") ** check_positive_int(z_dim, "z_dim")


def grid_nodes(points: int, limit: float = 4.0) -> tuple[torch.Tensor, float]:
    """The 1-D midpoint nodes on [−limit, limit] and the cell width h = 2·limit/points."""
    check_positive_int(points, "points")
    h = 2.0 * limit / points
    return torch.linspace(-limit + h / 2, limit - h / 2, points), h


def latent_grid(
    z_dim: int, points: int, limit: float = 4.0, start: int = 0, stop: int | None = None
) -> tuple[torch.Tensor, float]:
    """Grid nodes ``start:stop`` (row-major order) of the ``points``^``z_dim`` grid, shape
    (stop − start, z_dim), and log ΔV, the log-volume of one cell.

    Nodes are generated from their index, so a huge grid is never held in memory at once.
    """
    total = grid_size(z_dim, points)
    stop = total if stop is None else min(stop, total)
    nodes, h = grid_nodes(points, limit)
    idx = torch.arange(start, stop, dtype=torch.int64)
    cols = []
    for _ in range(z_dim):
        cols.append(nodes[idx % points])
        idx = idx // points
    return torch.stack(cols[::-1], dim=-1), z_dim * math.log(h)


def log_joint(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p_θ(z) + log p_θ(x|z) for every pair (z_g, x_i): shape (len(z), batch)."""
    z_b = z[:, None, :].expand(-1, x.shape[0], -1)
    return model.prior().log_prob(z_b) + model.decoder(z_b).log_prob(x)


@torch.no_grad()
def grid_log_marginal(
    model, x: torch.Tensor, points: int = 32, limit: float = 4.0, chunk: int = 2**16
) -> torch.Tensor:
    """log p_θ(x) per datapoint by the midpoint rule on the grid (nats), shape (batch,).

    Streams the grid in chunks of ``chunk`` nodes·datapoints and combines them by log-sum-exp,
    so memory stays bounded; the time grows as ``points ** z_dim``.
    """
    z_dim = model.prior().event_shape[0]
    total = grid_size(z_dim, points)
    step = max(1, chunk // max(1, x.shape[0]))
    acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
    log_dv = 0.0
    for start in range(0, total, step):
        z, log_dv = latent_grid(z_dim, points, limit, start, start + step)
        part = torch.logsumexp(log_joint(model, x, z.to(x.dtype)).double(), dim=0)
        acc = torch.logaddexp(acc, part)
    return acc + log_dv


@dataclass
class GridPosterior:
    """The true posterior p_θ(z|x) on a grid, for a batch of datapoints.

    ``z`` (G, z_dim) the nodes, ``log_density`` (G, batch) the normalised log-density
    log p_θ(z_g|x_i) (per unit volume), ``log_marginal`` (batch,) log p_θ(x_i), ``log_dv``
    the log-volume of a cell.
    """

    z: torch.Tensor
    log_density: torch.Tensor
    log_marginal: torch.Tensor
    log_dv: float

    @property
    def weights(self) -> torch.Tensor:
        """Cell probabilities p(z_g|x)·ΔV, summing to 1 over the grid: (G, batch)."""
        return (self.log_density + self.log_dv).exp()

    def mean(self) -> torch.Tensor:
        """E[z|x] per datapoint: (batch, z_dim)."""
        return torch.einsum("gb,gd->bd", self.weights, self.z.double())

    def covariance(self) -> torch.Tensor:
        """Cov[z|x] per datapoint: (batch, z_dim, z_dim)."""
        m = self.mean()
        c = self.z.double()[:, None, :] - m[None]
        return torch.einsum("gb,gbi,gbj->bij", self.weights, c, c)

    def kl_from(self, q: Distribution) -> torch.Tensor:
        """KL(q || p_θ(z|x)) = ∫ q (log q − log p(z|x)) dz on the grid, per datapoint (nats).

        ``q`` has batch shape (batch,) and event shape (z_dim,), e.g. the encoder's output.
        """
        zq = self.z[:, None, :].expand(-1, self.log_density.shape[1], -1).to(q.mean.dtype)
        log_q = q.log_prob(zq).double()
        wq = (log_q + self.log_dv).exp()
        return (wq * (log_q - self.log_density)).sum(0)

    def moment_matched_kl(self) -> torch.Tensor:
        """KL(p_θ(z|x) || N(m, S)) on the grid, per datapoint (nats), shape (batch,).

        m and S are the posterior's own mean and covariance (:meth:`mean`,
        :meth:`covariance`), so N(m, S) is the moment-matched Gaussian, which minimises
        KL(p || N) over all Gaussians N: the KL is zero exactly when the posterior is Gaussian,
        and otherwise measures how far it is from the closest Gaussian in this direction.
        """
        gauss = MultivariateNormal(self.mean(), covariance_matrix=self.covariance())
        log_g = gauss.log_prob(self.z.double()[:, None, :])  # (G, batch)
        return (self.weights * (self.log_density - log_g)).sum(0)

    def expectation_under(self, q: Distribution, values: torch.Tensor) -> torch.Tensor:
        """∫ q(z) v(z) dz on the grid, for node values ``values`` (G, batch)."""
        zq = self.z[:, None, :].expand(-1, self.log_density.shape[1], -1).to(q.mean.dtype)
        wq = (q.log_prob(zq).double() + self.log_dv).exp()
        return (wq * values.double()).sum(0)


@torch.no_grad()
def grid_posterior(model, x: torch.Tensor, points: int = 64, limit: float = 4.0) -> GridPosterior:
    """The exact (to grid precision) posterior p_θ(z|x) and log p_θ(x) for a small N_z.

    Holds the whole grid in memory: meant for N_z ≤ 3. For the marginal alone at larger N_z
    use :func:`grid_log_marginal`, which streams.
    """
    z_dim = model.prior().event_shape[0]
    z, log_dv = latent_grid(z_dim, points, limit)
    lj = log_joint(model, x, z.to(x.dtype)).double()
    log_px = torch.logsumexp(lj, dim=0) + log_dv
    return GridPosterior(z, lj - log_px, log_px, log_dv)


def time_grid_marginal(
    model, x: torch.Tensor, points: int, limit: float = 4.0, repeats: int = 1
) -> float:
    """Wall-clock seconds of one :func:`grid_log_marginal` call (best of ``repeats``)."""
    best = math.inf
    for _ in range(check_positive_int(repeats, "repeats")):
        started = time.perf_counter()
        grid_log_marginal(model, x, points, limit)
        best = min(best, time.perf_counter() - started)
    return best


def mcem_gradient_evaluations(
    n_data: int, n_samples: int, n_leapfrog: int = 10, warmup: int = 0
) -> int:
    """Decoder-gradient evaluations of one Monte Carlo EM sweep with an HMC E-step: every
    datapoint runs (warmup + n_samples) transitions of (n_leapfrog + 1) gradients each
    (:func:`aevb.hmc.leapfrog`). AEVB spends one (L = 1) per datapoint per sweep."""
    return n_data * (warmup + n_samples) * (n_leapfrog + 1)


# ----------------------------------------------------------------------------------------------
# Closed forms for the linear-Gaussian model.
# ----------------------------------------------------------------------------------------------


def as_multivariate(q: Distribution) -> MultivariateNormal:
    """A diagonal ``Independent(Normal)`` as the equivalent :class:`MultivariateNormal`."""
    return MultivariateNormal(q.mean, covariance_matrix=torch.diag_embed(q.variance))


def linear_gaussian_expected_log_likelihood(model, x: torch.Tensor) -> torch.Tensor:
    """E_{q_φ(z|x)}[log p_θ(x|z)] in closed form for the linear-Gaussian model (nats):

    −D/2 log(2πs²) − (‖x − Wm − b‖² + tr(W diag(v) Wᵀ))/(2s²), with q = N(m, diag v) and
    p_θ(x|z) = N(Wz + b, s² I). Shape (batch,).
    """
    q = model.encoder(x)
    W, b = model.decoder.W, model.decoder.b
    s2 = (2 * model.decoder.log_sigma).exp()
    resid = x - q.mean @ W.T - b
    trace = (q.variance * W.square().sum(0)).sum(-1)
    D = x.shape[-1]
    return -0.5 * D * torch.log(2 * math.pi * s2) - (resid.square().sum(-1) + trace) / (2 * s2)


def linear_gaussian_bound(model, x: torch.Tensor) -> torch.Tensor:
    """The exact bound L(θ, φ; x) = −KL(q_φ(z|x) || p(z)) + E_q[log p_θ(x|z)] (eq. 3, both
    terms analytic) for the linear-Gaussian model: shape (batch,), nats."""
    q = model.encoder(x)
    return linear_gaussian_expected_log_likelihood(model, x) - kl_divergence(q, model.prior())


def kl_to_posterior(model, x: torch.Tensor) -> torch.Tensor:
    """KL(q_φ(z|x) || p_θ(z|x)) exactly, for a model with a Gaussian ``posterior(x)`` (the
    linear-Gaussian model): the gap of eq. 1. Shape (batch,), nats."""
    return kl_divergence(as_multivariate(model.encoder(x)), model.posterior(x))
