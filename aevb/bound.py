"""The variational lower bound L(θ, φ; x) and its SGVB estimators (Section 2.3).

::

    log p_θ(x) = KL(q_φ(z|x) || p_θ(z|x)) + L(θ, φ; x)                          (eq. 1)
    L = E_q[−log q_φ(z|x) + log p_θ(x, z)]                                      (eq. 2)
      = −KL(q_φ(z|x) || p_θ(z)) + E_q[log p_θ(x|z)]                             (eq. 3)

Estimator A (eq. 6) estimates eq. 2 by Monte Carlo; estimator B (eq. 7) uses the analytic KL
of eq. 3 (Appendix B for Gaussians) and Monte Carlo only for the reconstruction term. Both draw
z = g_φ(ε, x) with ε ~ p(ε), so gradients flow through z (the reparameterization trick).

Every function returns one value per datapoint, shape (batch,), in nats.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch.distributions import Distribution, kl_divergence

from ._checks import check_model_data, check_positive_int
from ._random import seeded_by

ESTIMATORS: tuple[str, ...] = ("A", "B")


class LatentVariableModel(Protocol):
    """What the estimators need: an encoder, a decoder and a prior, each a distribution."""

    encoder: torch.nn.Module  # x -> q_φ(z|x)
    decoder: torch.nn.Module  # z -> p_θ(x|z)

    def prior(self) -> Distribution: ...


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) || N(0, I)) = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)  (Appendix B).

    Summed over the last dimension; shape (...,).
    """
    return -0.5 * torch.sum(1.0 + log_var - mu.square() - log_var.exp(), dim=-1)


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r}; use 'A' (eq. 6) or 'B' (eq. 7)")


def _elbo_a(model: LatentVariableModel, x: torch.Tensor, L: int) -> torch.Tensor:
    q = model.encoder(x)
    z = q.rsample((L,))  # (L, batch, z_dim), reparameterized
    log_joint = model.prior().log_prob(z) + model.decoder(z).log_prob(x)
    return (log_joint - q.log_prob(z)).mean(0)


def _elbo_b(model: LatentVariableModel, x: torch.Tensor, L: int) -> torch.Tensor:
    q = model.encoder(x)
    z = q.rsample((L,))
    return model.decoder(z).log_prob(x).mean(0) - kl_divergence(q, model.prior())


def _elbo(model: LatentVariableModel, x: torch.Tensor, L: int, estimator: str) -> torch.Tensor:
    """:func:`elbo` without the input checks (for callers that made them once)."""
    return _elbo_a(model, x, L) if estimator == "A" else _elbo_b(model, x, L)


def elbo_a(model: LatentVariableModel, x: torch.Tensor, L: int = 1) -> torch.Tensor:
    """Estimator A, eq. 6: (1/L) Σ_l [log p_θ(x, z_l) − log q_φ(z_l|x)], z_l ~ q_φ(z|x).

    ``x`` is checked as in :func:`elbo`.
    """
    check_positive_int(L, "L")
    check_model_data(model, x)
    return _elbo_a(model, x, L)


def elbo_b(model: LatentVariableModel, x: torch.Tensor, L: int = 1) -> torch.Tensor:
    """Estimator B, eq. 7: −KL(q_φ(z|x) || p_θ(z)) + (1/L) Σ_l log p_θ(x|z_l).

    The KL is analytic (:func:`torch.distributions.kl_divergence`; for the Gaussian case it
    equals :func:`gaussian_kl`, Appendix B). ``x`` is checked as in :func:`elbo`.
    """
    check_positive_int(L, "L")
    check_model_data(model, x)
    return _elbo_b(model, x, L)


def elbo(
    model: LatentVariableModel, x: torch.Tensor, L: int = 1, estimator: str = "B"
) -> torch.Tensor:
    """The SGVB estimate of L(θ, φ; x) per datapoint with estimator ``"A"`` or ``"B"``.

    ``x`` is a non-empty batch (batch, x_dim): a clear error if its type, shape or values
    cannot be data for ``model`` (the model's ``check_input`` when it has one, else a finite
    float batch of the model's ``x_dim``; one pass over the data).
    """
    _check_estimator(estimator)
    check_positive_int(L, "L")
    check_model_data(model, x)
    return _elbo(model, x, L, estimator)


def minibatch_bound(
    model: LatentVariableModel, x: torch.Tensor, N: int, L: int = 1, estimator: str = "B"
) -> torch.Tensor:
    """Eq. 8: L(θ, φ; X) ≈ (N/M) Σ_{i=1}^{M} L̃(θ, φ; x⁽ⁱ⁾), the full-data bound from M points."""
    check_positive_int(N, "N")
    _check_estimator(estimator)
    check_positive_int(L, "L")
    check_model_data(model, x)
    return _elbo(model, x, L, estimator).sum() * (N / x.shape[0])


@torch.no_grad()
def dataset_bound(
    model: LatentVariableModel,
    x: torch.Tensor,
    L: int = 1,
    estimator: str = "B",
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> float:
    """The average bound per datapoint over ``x`` (nats), evaluated in batches without grads.

    With ``generator`` the noise ε is drawn from it (deterministic evaluation under a seed).
    All of ``x`` is checked once, before the first batch.
    """
    _check_estimator(estimator)
    check_positive_int(L, "L")
    check_positive_int(batch_size, "batch_size")
    check_model_data(model, x)
    total = 0.0
    # The noise under a seed drawn from ``generator``; torch's global generators are left as
    # they were (CPU and CUDA: a training loop's noise must not depend on its evaluations).
    with seeded_by(generator, 2**31 - 1):
        for start in range(0, x.shape[0], batch_size):
            total += float(_elbo(model, x[start : start + batch_size], L, estimator).sum())
    return total / x.shape[0]
