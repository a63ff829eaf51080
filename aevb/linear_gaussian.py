"""A latent-variable model where everything is exact: the linear-Gaussian model.

    p(z) = N(0, I),  p_θ(x|z) = N(Wz + b, σ² I)
    p_θ(x) = N(b, WWᵀ + σ² I),  p_θ(z|x) = N(S Wᵀ(x − b)/σ², S),  S = (I + WᵀW/σ²)⁻¹

(probabilistic PCA). The book uses it where log p(x) and the true posterior must be known:
to check the bound's identity (eq. 1), the estimators, and the importance-sampled log p(x).
Its encoder is linear too, so q_φ(z|x) can equal p_θ(z|x) exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from ._checks import check_data, check_model_data, check_positive_int, check_positive_number
from ._random import seeded


def _check_sigma(sigma: float) -> float:
    return check_positive_number(
        sigma, "sigma", "a positive noise standard deviation of p(x|z), e.g. 0.5"
    )


class LinearGaussianDecoder(nn.Module):
    """p_θ(x|z) = N(x; Wz + b, σ² I)."""

    def __init__(self, z_dim: int, x_dim: int, sigma: float = 0.5) -> None:
        super().__init__()
        check_positive_int(z_dim, "z_dim")
        check_positive_int(x_dim, "x_dim")
        _check_sigma(sigma)
        self.W = nn.Parameter(torch.randn(x_dim, z_dim) / z_dim**0.5)
        self.b = nn.Parameter(torch.zeros(x_dim))
        self.log_sigma = nn.Parameter(torch.tensor(float(sigma)).log())

    def forward(self, z: torch.Tensor) -> Distribution:
        """p_θ(x|z) as ``Independent(Normal(Wz + b, σ), 1)``."""
        loc = z @ self.W.T + self.b
        return Independent(Normal(loc, self.log_sigma.exp().expand_as(loc)), 1)


class LinearGaussianEncoder(nn.Module):
    """q_φ(z|x) = N(z; Ax + c, diag exp(s)): linear mean, a learned diagonal variance."""

    def __init__(self, x_dim: int, z_dim: int) -> None:
        super().__init__()
        check_positive_int(x_dim, "x_dim")
        check_positive_int(z_dim, "z_dim")
        self.A = nn.Parameter(torch.zeros(z_dim, x_dim))
        self.c = nn.Parameter(torch.zeros(z_dim))
        self.log_var = nn.Parameter(torch.zeros(z_dim))

    def forward(self, x: torch.Tensor) -> Distribution:
        """q_φ(z|x) as ``Independent(Normal(Ax + c, exp(s/2)), 1)``."""
        loc = x @ self.A.T + self.c
        return Independent(Normal(loc, (0.5 * self.log_var).exp().expand_as(loc)), 1)


class LinearGaussianModel(nn.Module):
    """The pair (q_φ, p_θ) with exact :meth:`log_marginal` and :meth:`posterior`."""

    def __init__(self, x_dim: int, z_dim: int, sigma: float = 0.5) -> None:
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.decoder = LinearGaussianDecoder(z_dim, x_dim, sigma)
        self.encoder = LinearGaussianEncoder(x_dim, z_dim)

    def prior(self) -> Distribution:
        """p(z) = N(0, I)."""
        zeros = torch.zeros(self.z_dim, device=self.decoder.W.device)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is a finite float batch (batch, x_dim)."""
        check_data(x, self.x_dim)

    def marginal(self) -> MultivariateNormal:
        """p_θ(x) = N(b, WWᵀ + σ² I), exactly."""
        W, var = self.decoder.W, self.decoder.log_sigma.exp() ** 2
        cov = W @ W.T + var * torch.eye(self.x_dim, device=W.device)
        return MultivariateNormal(self.decoder.b, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p_θ(x) per datapoint, exactly (nats). ``x`` is checked (:meth:`check_input`)."""
        check_model_data(self, x)
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> MultivariateNormal:
        """The true posterior p_θ(z|x), a full-covariance Gaussian per datapoint. ``x`` is
        checked (:meth:`check_input`)."""
        check_model_data(self, x)
        W, var = self.decoder.W, self.decoder.log_sigma.exp() ** 2
        precision = torch.eye(self.z_dim, device=W.device) + W.T @ W / var
        cov = torch.linalg.inv(precision)
        loc = (x - self.decoder.b) @ W @ cov.T / var
        return MultivariateNormal(loc, covariance_matrix=cov.expand(x.shape[0], -1, -1))

    @torch.no_grad()
    def fit_encoder_to_posterior(self, x: torch.Tensor) -> None:
        """Set q_φ to the diagonal Gaussian closest to the exact posterior N(m, Λ⁻¹) in KL(q||p):
        the exact mean m, and variances 1/Λ_jj (the diagonal of the precision Λ = I + WᵀW/σ²
        inverted, not the diagonal of the covariance Λ⁻¹)."""
        W, var = self.decoder.W, self.decoder.log_sigma.exp() ** 2
        precision = torch.eye(self.z_dim, device=W.device) + W.T @ W / var
        cov = torch.linalg.inv(precision)
        self.encoder.A.copy_(cov @ W.T / var)
        self.encoder.c.copy_(-(cov @ W.T / var) @ self.decoder.b)
        # The mean-field q closest in KL(q||p) has precision diag(P): variance 1/P_jj.
        self.encoder.log_var.copy_((1.0 / torch.diagonal(precision)).log())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws x ~ p_θ(x)."""
        check_positive_int(n, "n")
        z = torch.randn(n, self.z_dim, generator=generator)
        with torch.no_grad():
            loc = z @ self.decoder.W.T + self.decoder.b
            noise = torch.randn(n, self.x_dim, generator=generator)
            return loc + self.decoder.log_sigma.exp() * noise


def linear_gaussian_model(x_dim: int, z_dim: int, sigma: float = 0.5, seed: int = 0):
    """A :class:`LinearGaussianModel` with weights drawn under ``seed`` (deterministic)."""
    with seeded(seed):
        return LinearGaussianModel(x_dim, z_dim, sigma)
