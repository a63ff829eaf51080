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

from ._checks import check_model_data, check_positive_int, check_positive_number
from .linear_gaussian import LinearGaussianModel

#: The most grid nodes :func:`grid_posterior` holds in memory at once (a 256³ grid).
MAX_HELD_NODES = 2**24
#: The most grid nodes per datapoint :func:`grid_log_marginal` streams through (about 10¹²,
#: hours of decoder evaluations): beyond it the integral cannot finish, which is Section 2.1's
#: point, and a call is refused instead of running for years.
MAX_STREAMED_NODES = 2**40


def _check_grid(z_dim: int, points: int, limit: float, cap: int, fn: str, alternative: str) -> int:
    """The number of grid nodes, or a clear error if the grid is too large or ill-defined."""
    total = grid_size(z_dim, points)
    _check_limit(limit)
    if total > cap:
        raise ValueError(
            f"{fn} would need points ** N_z = {points} ** {z_dim} = {float(total):.2e} grid "
            f"nodes per datapoint (at most {float(cap):.1e}): the exponential cost of "
            f"Section 2.1. {alternative}"
        )
    return total


def _check_limit(limit: float) -> float:
    return check_positive_number(
        limit, "limit", "a positive half-width: the grid spans [-limit, limit], e.g. 4.0"
    )


def _z_dim(model) -> int:
    return int(model.prior().event_shape[0])


def _check_nodes(z: torch.Tensor, z_dim: int) -> None:
    """Grid nodes or latent points: a float tensor (G, z_dim)."""
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        got = z.dtype if isinstance(z, torch.Tensor) else type(z).__name__
        raise TypeError(f"z must be a float tensor (G, N_z) of latent points, got {got}")
    if z.dim() != 2 or z.shape[1] != z_dim:
        raise ValueError(
            f"z has shape {tuple(z.shape)}; expected (G, {z_dim}): G latent points in the "
            f"model's N_z = {z_dim} (e.g. from latent_grid)"
        )


# ----------------------------------------------------------------------------------------------
# The grid.
# ----------------------------------------------------------------------------------------------


def grid_size(z_dim: int, points: int) -> int:
    """The number of grid nodes (= decoder evaluations per datapoint): ``points ** z_dim``."""
    return check_positive_int(points, "points") ** check_positive_int(z_dim, "z_dim")


def grid_nodes(points: int, limit: float = 4.0) -> tuple[torch.Tensor, float]:
    """The 1-D midpoint nodes on [−limit, limit] and the cell width h = 2·limit/points."""
    check_positive_int(points, "points")
    _check_limit(limit)
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
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be an integer >= 0 (a node index), got {start!r}")
    if stop is not None and (isinstance(stop, bool) or not isinstance(stop, int) or stop < start):
        raise ValueError(f"stop must be None or an integer >= start = {start}, got {stop!r}")
    stop = total if stop is None else min(stop, total)
    nodes, h = grid_nodes(points, limit)
    idx = torch.arange(start, stop, dtype=torch.int64)
    cols = []
    for _ in range(z_dim):
        cols.append(nodes[idx % points])
        idx = idx // points
    return torch.stack(cols[::-1], dim=-1), z_dim * math.log(h)


def log_joint(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p_θ(z) + log p_θ(x|z) for every pair (z_g, x_i): shape (len(z), batch).

    ``x`` (batch, x_dim) is checked (the model's ``check_input`` when it has one) and ``z`` is
    a float tensor (G, N_z).
    """
    check_model_data(model, x)
    _check_nodes(z, _z_dim(model))
    return _log_joint(model, x, z)


def _log_joint(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """:func:`log_joint` without the checks (for the grid's loop over chunks)."""
    z_b = z[:, None, :].expand(-1, x.shape[0], -1)
    return model.prior().log_prob(z_b) + model.decoder(z_b).log_prob(x)


@torch.no_grad()
def grid_log_marginal(
    model, x: torch.Tensor, points: int = 32, limit: float = 4.0, chunk: int = 2**16
) -> torch.Tensor:
    """log p_θ(x) per datapoint by the midpoint rule on the grid (nats), shape (batch,).

    Streams the grid in chunks of ``chunk`` nodes·datapoints and combines them by log-sum-exp,
    so memory stays bounded; the time grows as ``points ** z_dim``. ``x`` is checked once (the
    model's ``check_input`` when it has one), and a grid of more than
    :data:`MAX_STREAMED_NODES` nodes, which could not finish, is refused.
    """
    check_model_data(model, x)
    check_positive_int(chunk, "chunk")
    total = _check_grid(
        _z_dim(model), points, limit, MAX_STREAMED_NODES, "grid_log_marginal",
        "Use fewer points per axis, a model with fewer latent dimensions, or an estimate "
        "(aevb.marginal.importance_log_px, aevb.marginal_hmc.hmc_log_px)",
    )  # fmt: skip
    return _grid_log_marginal(model, x, points, limit, chunk, total)


def _grid_log_marginal(model, x, points: int, limit: float, chunk: int, total: int):
    """:func:`grid_log_marginal` once its arguments are checked."""
    z_dim = _z_dim(model)
    step = max(1, chunk // max(1, x.shape[0]))
    acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
    log_dv = 0.0
    for start in range(0, total, step):
        z, log_dv = latent_grid(z_dim, points, limit, start, start + step)
        part = torch.logsumexp(_log_joint(model, x, z.to(x.dtype)).double(), dim=0)
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
        self._check_q(q)
        zq = self.z[:, None, :].expand(-1, self.log_density.shape[1], -1).to(q.mean.dtype)
        log_q = q.log_prob(zq).double()
        wq = (log_q + self.log_dv).exp()
        return (wq * (log_q - self.log_density)).sum(0)

    def _check_q(self, q: Distribution) -> None:
        """Shapes only (no pass over values): q has one distribution per datapoint on z."""
        batch, z_dim = self.log_density.shape[1], self.z.shape[1]
        if not isinstance(q, Distribution):
            raise TypeError(f"q must be a torch Distribution, got {type(q).__name__}")
        if tuple(q.batch_shape) != (batch,) or tuple(q.event_shape) != (z_dim,):
            raise ValueError(
                f"q has batch shape {tuple(q.batch_shape)} and event shape "
                f"{tuple(q.event_shape)}; expected ({batch},) and ({z_dim},): one distribution "
                "per datapoint of this grid posterior, over z (e.g. model.encoder(x))"
            )

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
        self._check_q(q)
        if not isinstance(values, torch.Tensor) or values.shape != self.log_density.shape:
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise ValueError(
                f"values is {got}; expected {tuple(self.log_density.shape)} = (G, batch): one "
                "value per grid node and datapoint"
            )
        zq = self.z[:, None, :].expand(-1, self.log_density.shape[1], -1).to(q.mean.dtype)
        wq = (q.log_prob(zq).double() + self.log_dv).exp()
        return (wq * values.double()).sum(0)


@torch.no_grad()
def grid_posterior(model, x: torch.Tensor, points: int = 64, limit: float = 4.0) -> GridPosterior:
    """The exact (to grid precision) posterior p_θ(z|x) and log p_θ(x) for a small N_z.

    Holds the whole grid in memory: meant for N_z ≤ 3 (more than :data:`MAX_HELD_NODES` nodes
    are refused). For the marginal alone at larger N_z use :func:`grid_log_marginal`, which
    streams. ``x`` is checked (the model's ``check_input`` when it has one).
    """
    check_model_data(model, x)
    z_dim = _z_dim(model)
    _check_grid(
        z_dim, points, limit, MAX_HELD_NODES, "grid_posterior",
        "It holds the whole grid in memory: use fewer points per axis, or grid_log_marginal "
        "(which streams) for log p(x) alone",
    )  # fmt: skip
    z, log_dv = latent_grid(z_dim, points, limit)
    lj = _log_joint(model, x, z.to(x.dtype)).double()
    log_px = torch.logsumexp(lj, dim=0) + log_dv
    return GridPosterior(z, lj - log_px, log_px, log_dv)


def time_grid_marginal(
    model, x: torch.Tensor, points: int, limit: float = 4.0, repeats: int = 1
) -> float:
    """Wall-clock seconds of one :func:`grid_log_marginal` call (best of ``repeats``); the
    arguments are checked once, before the clock starts."""
    check_positive_int(repeats, "repeats")
    check_model_data(model, x)
    chunk = 2**16
    total = _check_grid(
        _z_dim(model), points, limit, MAX_STREAMED_NODES, "time_grid_marginal",
        "Time a smaller grid and extrapolate: the time grows as points ** N_z",
    )  # fmt: skip
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        _grid_log_marginal(model, x, points, limit, chunk, total)
        best = min(best, time.perf_counter() - started)
    return best


def mcem_gradient_evaluations(
    n_data: int, n_samples: int, n_leapfrog: int = 10, warmup: int = 0
) -> int:
    """Decoder-gradient evaluations of one Monte Carlo EM sweep with an HMC E-step: every
    datapoint runs (warmup + n_samples) transitions of (n_leapfrog + 1) gradients each
    (:func:`aevb.hmc.leapfrog`). AEVB spends one (L = 1) per datapoint per sweep."""
    check_positive_int(n_data, "n_data")
    check_positive_int(n_samples, "n_samples")
    check_positive_int(n_leapfrog, "n_leapfrog")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
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
    p_θ(x|z) = N(Wz + b, s² I). Shape (batch,). ``x`` must be finite (batch, x_dim).
    """
    _check_linear(model, x, "linear_gaussian_expected_log_likelihood")
    return _expected_log_likelihood(model, x)


def _check_linear(model, x: torch.Tensor, fn: str) -> None:
    """A linear-Gaussian model (:mod:`aevb.linear_gaussian`) and finite data (batch, x_dim)."""
    if not isinstance(model, LinearGaussianModel):
        raise TypeError(
            f"{fn} is the closed form of the linear-Gaussian model; got {type(model).__name__}. "
            "Use aevb.linear_gaussian.linear_gaussian_model(...), or for other models a "
            "Monte Carlo estimate (aevb.bound.elbo) or the grid (grid_posterior)"
        )
    check_model_data(model, x)


def _expected_log_likelihood(model, x: torch.Tensor) -> torch.Tensor:
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
    _check_linear(model, x, "linear_gaussian_bound")
    q = model.encoder(x)
    return _expected_log_likelihood(model, x) - kl_divergence(q, model.prior())


def kl_to_posterior(model, x: torch.Tensor) -> torch.Tensor:
    """KL(q_φ(z|x) || p_θ(z|x)) exactly, for a model with a Gaussian ``posterior(x)`` (the
    linear-Gaussian model): the gap of eq. 1. Shape (batch,), nats."""
    posterior = getattr(model, "posterior", None)
    if not callable(posterior) or not hasattr(model, "encoder"):
        raise TypeError(
            f"kl_to_posterior needs a model with an exact Gaussian posterior(x), such as "
            f"aevb.linear_gaussian's; got {type(model).__name__}. For an MLP decoder use the "
            "grid: grid_posterior(model, x).kl_from(model.encoder(x))"
        )
    check_model_data(model, x)
    return kl_divergence(as_multivariate(model.encoder(x)), model.posterior(x))
