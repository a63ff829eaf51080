"""Monte Carlo gradient estimators of ∇_φ E_{q_φ(z)}[f(z)] (Sections 2.2 and 2.4).

Each estimator is a *surrogate*: a scalar whose gradient, by autograd, is the estimator. All
share one signature, ``(f, q, L) -> surrogate``, where ``f`` maps samples of shape
``(L, *batch, z_dim)`` to values of shape ``(L, *batch)``, ``q`` is a :mod:`torch.distributions`
object and ``L`` the number of samples. The surrogate is averaged over the L samples and
summed over the batch.

- :func:`score_function_surrogate` — the naive estimator of Section 2.2,
  ∇_φ E_q[f(z)] ≈ (1/L) Σ_l f(z_l) ∇_φ log q_φ(z_l), z_l ~ q_φ (no gradient through z),
  optionally with a baseline (a control variate) subtracted from f.
- :func:`pathwise_surrogate` — the reparameterized estimator of Section 2.4,
  z_l = g_φ(ε_l), ε_l ~ p(ε), ∇_φ E_q[f(z)] ≈ (1/L) Σ_l ∇_φ f(g_φ(ε_l)).

If f itself depends on parameters (as the bound does on θ and, through −log q, on φ), both
surrogates also pass that direct gradient, so each is an unbiased estimator of the full
gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.distributions import Distribution

from ._checks import check_model_data, check_positive_int

Function = Callable[[torch.Tensor], torch.Tensor]


def _check_distribution(q: object) -> None:
    if not isinstance(q, Distribution):
        raise TypeError(
            f"q must be a torch.distributions.Distribution, got {type(q).__name__}; "
            "pass e.g. model.encoder(x)"
        )


def pathwise_surrogate(f: Function, q: Distribution, L: int = 1) -> torch.Tensor:
    """The reparameterized (pathwise) surrogate (1/L) Σ_l f(g_φ(ε_l)), eq. 4 and Section 2.4."""
    check_positive_int(L, "L")
    _check_distribution(q)
    if not q.has_rsample:
        raise TypeError(
            f"{type(q).__name__} has no reparameterized sampler (rsample); use "
            "score_function_surrogate, or a location-scale / inverse-CDF family"
        )
    return f(q.rsample((L,))).mean(0).sum()


def score_function_surrogate(
    f: Function, q: Distribution, L: int = 1, baseline: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """The naive score-function surrogate of Section 2.2 (REINFORCE, the likelihood ratio).

    Its gradient is (1/L) Σ_l (f(z_l) − b) ∇_φ log q_φ(z_l) + (1/L) Σ_l ∇ f(z_l) with z_l ~ q
    held fixed. A baseline ``b`` that does not depend on z_l keeps it unbiased, because
    E_q[∇_φ log q_φ(z)] = 0.
    """
    check_positive_int(L, "L")
    _check_distribution(q)
    z = q.sample((L,))
    fz = f(z)
    weight = (fz - baseline).detach()
    return (weight * q.log_prob(z) + fz).mean(0).sum()


def gradient_samples(
    surrogate: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], n: int
) -> torch.Tensor:
    """``n`` independent draws of the gradient of ``surrogate()`` w.r.t. ``params``: (n, P).

    Each draw calls ``surrogate()`` once (fresh samples) and flattens the gradients of every
    parameter into one row, for measuring the mean, the variance and the signal-to-noise
    ratio of an estimator.
    """
    check_positive_int(n, "n")
    params = list(params)
    rows = []
    for _ in range(n):
        grads = torch.autograd.grad(surrogate(), params, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, params, strict=True)
                ]
            )
        )
    return torch.stack(rows)


def elbo_integrand(model, x: torch.Tensor, q: Distribution) -> Function:
    """f(z) = log p_θ(x, z) − log q_φ(z|x), the integrand of eq. 2, for a fixed batch x.

    ``x`` (batch, x_dim) is checked as by :func:`aevb.bound.elbo`, and ``q`` must hold one
    distribution per row of ``x``.
    """
    check_model_data(model, x)
    _check_distribution(q)
    if tuple(q.batch_shape[-1:]) != tuple(x.shape[:1]):
        raise ValueError(
            f"q has batch shape {tuple(q.batch_shape)} but x has {x.shape[0]} rows; "
            "pass q = model.encoder(x) for the same x"
        )
    return _elbo_integrand(model, x, q)


def _elbo_integrand(model, x: torch.Tensor, q: Distribution) -> Function:
    def f(z: torch.Tensor) -> torch.Tensor:
        return model.prior().log_prob(z) + model.decoder(z).log_prob(x) - q.log_prob(z)

    return f


def naive_elbo_surrogate(model, x: torch.Tensor, L: int = 1, baseline=0.0) -> torch.Tensor:
    """The naive estimator of ∇_{θ,φ} Σ_i L(θ, φ; x⁽ⁱ⁾) (Section 2.2), as a surrogate.

    ``x`` (batch, x_dim) is checked as by :func:`aevb.bound.elbo`.
    """
    check_positive_int(L, "L")
    check_model_data(model, x)
    q = model.encoder(x)
    return score_function_surrogate(_elbo_integrand(model, x, q), q, L, baseline)


def reparameterized_elbo_surrogate(model, x: torch.Tensor, L: int = 1) -> torch.Tensor:
    """The SGVB (estimator A) gradient of Σ_i L(θ, φ; x⁽ⁱ⁾) as a surrogate (Section 2.3).

    ``x`` (batch, x_dim) is checked as by :func:`aevb.bound.elbo`.
    """
    check_positive_int(L, "L")
    check_model_data(model, x)
    q = model.encoder(x)
    return pathwise_surrogate(_elbo_integrand(model, x, q), q, L)
