"""Measuring gradient estimators: variance, signal-to-noise ratio, and closed forms to check them.

Section 2.2 of the paper dismisses the naive score-function estimator because it "exhibits
very high variance"; Section 2.4's reparameterization trick is the cure. This module measures
both claims:

- **Closed forms** for the 1-D test functions, z ~ N(μ, σ²), one sample, gradient w.r.t. μ.
  For f(z) = z² (derived in chapter 3; ε = (z − μ)/σ)::

    score function  ĝ = (z² − b)·ε/σ,   Var = c²/σ² + 8μ² + 15σ² + 6c,  c = μ² − b
                    (b = 0: μ⁴/σ² + 14μ² + 15σ²; best constant b = μ² + 3σ²: 8μ² + 6σ²)
    pathwise        ĝ = 2z,            Var = 4σ²

  and for f(z) = ‖z‖² in D dimensions at μ = 0: σ²(D + 2)(D + 4) against 4σ² per coordinate.
  Any other f is handled exactly (to quadrature precision) by Gauss–Hermite quadrature.
- **Simulation**: :func:`gaussian_gradient_draws` draws n independent estimates of
  ∇_μ E_{N(μ, σ²I)}[f(z)] at once (vectorised, one autograd call).
- **Inside a VAE**: :func:`encoder_output_gradients` draws per-datapoint gradients of the
  bound w.r.t. the encoder's outputs (μ, log σ²) under either estimator, vectorised over
  repeats; :func:`output_layer_moments` turns them into the mean and variance of the gradient
  w.r.t. the encoder's output layer (Appendix C.2) for a minibatch, by the chain rule.
- **Summaries**: :func:`snr`, :func:`variance_stderr` (for CLT bounds on a sample variance).

Every variance is of a *single* estimate built from ``L`` samples; averaging over ``L``
divides it by ``L`` (the draws are independent).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from ._checks import check_finite, check_model_data, check_positive_int
from ._random import seeded_by
from .estimators import pathwise_surrogate, score_function_surrogate

Function = Callable[[torch.Tensor], torch.Tensor]

ESTIMATORS: tuple[str, ...] = ("pathwise", "score", "score_loo")

# --------------------------------------------------------------------------------------------
# Closed forms: f(z) = z², z ~ N(μ, σ²), gradient w.r.t. μ.
# --------------------------------------------------------------------------------------------


def square_score_variance(mu: float, sigma: float, baseline: float = 0.0, L: int = 1) -> float:
    """Var of the score-function estimate of d/dμ E[z²] with a constant baseline b, L samples.

    ĝ = (1/L) Σ_l (z_l² − b) (z_l − μ)/σ²; per sample Var = c²/σ² + 8μ² + 15σ² + 6c with
    c = μ² − b. With b = 0 this is μ⁴/σ² + 14μ² + 15σ².
    """
    check_positive_int(L, "L")
    c = mu**2 - baseline
    return (c**2 / sigma**2 + 8 * mu**2 + 15 * sigma**2 + 6 * c) / L


def square_pathwise_variance(mu: float, sigma: float, L: int = 1) -> float:
    """Var of the pathwise estimate (1/L) Σ_l 2(μ + σε_l) of d/dμ E[z²]: 4σ²/L (μ-free)."""
    check_positive_int(L, "L")
    return 4 * sigma**2 / L


def square_optimal_baseline(mu: float, sigma: float) -> float:
    """The constant baseline minimising :func:`square_score_variance`: b* = μ² + 3σ².

    (Not E[z²] = μ² + σ²: the best baseline weights f by the squared score.) The variance
    there is 8μ² + 6σ², still unbounded relative to 4σ² as σ → 0 unless μ = 0.
    """
    return mu**2 + 3 * sigma**2


def sum_of_squares_score_variance(mu: torch.Tensor | list, sigma: float, index: int = 0) -> float:
    """Var of the score estimate of ∂/∂μ_i E‖z‖², z ~ N(μ, σ²I_D), one sample, no baseline.

    With A = Σ_{j≠i} (μ_j² + σ²) and V = Σ_{j≠i} (4μ_j²σ² + 2σ⁴) (mean and variance of the
    other coordinates' contribution S),
    Var = μ_i⁴/σ² + 14μ_i² + 15σ² + 2(μ_i² + 3σ²)A/σ² + (V + A²)/σ².
    At μ = 0 it is σ²(D + 2)(D + 4): quadratic in D, while the pathwise variance stays 4σ².
    """
    m = torch.as_tensor(mu, dtype=torch.float64).reshape(-1)
    mi = float(m[index])
    others = torch.cat([m[:index], m[index + 1 :]])
    s2 = sigma**2
    A = float((others.square() + s2).sum())
    V = float((4 * others.square() * s2 + 2 * s2**2).sum())
    return mi**4 / s2 + 14 * mi**2 + 15 * s2 + 2 * (mi**2 + 3 * s2) * A / s2 + (V + A**2) / s2


# --------------------------------------------------------------------------------------------
# Test functions and exact moments by Gauss–Hermite quadrature.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalarFunction:
    """A 1-D test function f and its derivative f′ (elementwise on tensors)."""

    name: str
    f: Function
    df: Function


TEST_FUNCTIONS: dict[str, ScalarFunction] = {
    "z^2": ScalarFunction("z^2", lambda z: z.square(), lambda z: 2 * z),
    "sin(z)": ScalarFunction("sin(z)", torch.sin, torch.cos),
}


def get_test_function(name: str) -> ScalarFunction:
    """One of :data:`TEST_FUNCTIONS` by name, with an error listing the names."""
    if name not in TEST_FUNCTIONS:
        raise KeyError(f"no test function {name!r}; use one of {', '.join(TEST_FUNCTIONS)}")
    return TEST_FUNCTIONS[name]


def _hermite(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ε_k and weights w_k with Σ_k w_k h(ε_k) ≈ E_{ε~N(0,1)}[h(ε)] (exact to degree 2K−1)."""
    x, w = np.polynomial.hermite.hermgauss(order)
    return torch.from_numpy(x * math.sqrt(2.0)), torch.from_numpy(w / math.sqrt(math.pi))


def gaussian_expectation(h: Function, order: int = 80) -> float:
    """E_{ε~N(0,1)}[h(ε)] by Gauss–Hermite quadrature (float64; exact for polynomials of
    degree < 2·order)."""
    eps, w = _hermite(order)
    return float((w * h(eps)).sum())


def score_variance_quadrature(
    f: Function, mu: float, sigma: float, baseline: float = 0.0, L: int = 1, order: int = 80
) -> float:
    """Var of the score estimate (1/L) Σ_l (f(z_l) − b)(z_l − μ)/σ² of d/dμ E[f(z)], exactly
    (to quadrature precision), z ~ N(μ, σ²)."""
    check_positive_int(L, "L")

    def g(e: torch.Tensor) -> torch.Tensor:
        return (f(mu + sigma * e) - baseline) * e / sigma

    mean = gaussian_expectation(g, order)
    return (gaussian_expectation(lambda e: g(e).square(), order) - mean**2) / L


def pathwise_variance_quadrature(
    df: Function, mu: float, sigma: float, L: int = 1, order: int = 80
) -> float:
    """Var of the pathwise estimate (1/L) Σ_l f′(μ + σε_l) of d/dμ E[f(z)], exactly."""
    check_positive_int(L, "L")
    mean = gaussian_expectation(lambda e: df(mu + sigma * e), order)
    return (gaussian_expectation(lambda e: df(mu + sigma * e).square(), order) - mean**2) / L


def true_gradient_quadrature(df: Function, mu: float, sigma: float, order: int = 80) -> float:
    """d/dμ E[f(z)] = E[f′(z)], z ~ N(μ, σ²), by quadrature."""
    return gaussian_expectation(lambda e: df(mu + sigma * e), order)


# --------------------------------------------------------------------------------------------
# Simulation: many independent gradient estimates at once.
# --------------------------------------------------------------------------------------------


def leave_one_out_baseline(fz: torch.Tensor) -> torch.Tensor:
    """b_l = (1/(L−1)) Σ_{k≠l} f(z_k) along dim 0: a baseline independent of z_l (needs L ≥ 2).

    Because b_l does not depend on z_l, E[(f(z_l) − b_l) ∇ log q(z_l)] = E[f ∇ log q]: the
    control variate keeps the estimator unbiased (the "fair best case" of chapter 3).
    """
    L = fz.shape[0]
    if L < 2:
        raise ValueError("the leave-one-out baseline needs L >= 2 samples per estimate")
    return (fz.sum(0, keepdim=True) - fz) / (L - 1)


def score_function_loo_surrogate(f: Function, q: Distribution, L: int) -> torch.Tensor:
    """The score-function surrogate with the leave-one-out baseline (RLOO):
    (1/L) Σ_l (f(z_l) − b_l) log q(z_l) + f(z_l), summed over the batch (gradient = estimator)."""
    z = q.sample((L,))
    fz = f(z)
    weight = (fz - leave_one_out_baseline(fz)).detach()
    return (weight * q.log_prob(z) + fz).mean(0).sum()


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r}; use one of {', '.join(ESTIMATORS)}")


def _check_draws(draws: torch.Tensor) -> None:
    if not isinstance(draws, torch.Tensor) or draws.dim() == 0 or draws.shape[0] < 2:
        shape = tuple(draws.shape) if isinstance(draws, torch.Tensor) else type(draws).__name__
        raise ValueError(
            f"draws is {shape}; pass a tensor with at least 2 draws along dim 0 "
            "(one estimate per row)"
        )


def _surrogate(
    f: Function, q: Distribution, L: int, estimator: str, baseline: torch.Tensor | float = 0.0
) -> torch.Tensor:
    if estimator == "pathwise":
        return pathwise_surrogate(f, q, L)
    if estimator == "score":
        return score_function_surrogate(f, q, L, baseline)
    if estimator == "score_loo":
        return score_function_loo_surrogate(f, q, L)
    raise ValueError(f"estimator={estimator!r}; use one of {', '.join(ESTIMATORS)}")


def gaussian_gradient_draws(
    f: Function,
    mu: float | torch.Tensor,
    sigma: float,
    n: int,
    *,
    L: int = 1,
    estimator: str = "pathwise",
    baseline: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` independent estimates of ∇_μ E_{z~N(μ, σ²I)}[f(z)], each from ``L`` samples.

    ``f`` maps (..., D) to (...); ``mu`` is a float (D = 1) or a (D,) tensor. Returns (n, D)
    in float64. ``estimator`` is ``"pathwise"`` (Section 2.4), ``"score"`` (Section 2.2, with
    an optional constant ``baseline``) or ``"score_loo"`` (leave-one-out baseline, L ≥ 2).
    All n estimates come from one vectorised autograd call; with ``generator`` the draws are
    reproducible without touching the global random state.
    """
    check_positive_int(n, "n")
    check_positive_int(L, "L")
    _check_estimator(estimator)
    try:
        scale = float(sigma)
    except (TypeError, ValueError):
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"sigma={sigma!r}; pass a finite standard deviation > 0")
    m = torch.as_tensor(mu, dtype=torch.float64).reshape(-1)
    check_finite(m, "mu", "pass a finite mean")
    leaf = m.expand(n, -1).clone().requires_grad_(True)
    q = Independent(Normal(leaf, torch.full_like(leaf, float(sigma)), validate_args=False), 1)
    with seeded_by(generator, 2**62):
        (grad,) = torch.autograd.grad(_surrogate(f, q, L, estimator, baseline), leaf)
    return grad.detach()


# --------------------------------------------------------------------------------------------
# Summaries with CLT error bars.
# --------------------------------------------------------------------------------------------


def variance_stderr(draws: torch.Tensor) -> torch.Tensor:
    """The standard error of the sample variance of ``draws`` along dim 0:
    √((m₄ − s⁴)/n), m₄ the fourth central moment (the CLT for the variance estimator)."""
    _check_draws(draws)
    d = draws.double()
    c = d - d.mean(0)
    s2 = c.square().mean(0)
    m4 = c.pow(4).mean(0)
    return ((m4 - s2.square()).clamp(min=0) / d.shape[0]).sqrt()


def mean_stderr(draws: torch.Tensor) -> torch.Tensor:
    """The standard error of the mean of ``draws`` along dim 0."""
    _check_draws(draws)
    return draws.double().std(0) / math.sqrt(draws.shape[0])


def snr(mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """The signal-to-noise ratio ``|E ĝ| / √Var ĝ``, elementwise (0 where both vanish)."""
    return mean.abs() / variance.clamp(min=torch.finfo(variance.dtype).tiny).sqrt()


# --------------------------------------------------------------------------------------------
# Inside a VAE: per-datapoint gradients w.r.t. the encoder's outputs.
# --------------------------------------------------------------------------------------------


def encoder_output_gradients(
    model,
    x: torch.Tensor,
    repeats: int,
    *,
    L: int = 1,
    estimator: str = "pathwise",
    bound: str = "A",
    baseline: torch.Tensor | float = 0.0,
    max_rows: int = 20_000,
) -> torch.Tensor:
    """``repeats`` independent estimates of ∇ L(θ, φ; x⁽ⁱ⁾) w.r.t. (μ⁽ⁱ⁾, log σ²⁽ⁱ⁾), the
    encoder's outputs, for each datapoint: shape (repeats, batch, 2·z_dim), float32.

    ``bound="A"`` differentiates the integrand of eq. 2 (log p(x, z) − log q(z|x); estimator A,
    eq. 6); ``bound="B"`` the reconstruction term of eq. 3 by Monte Carlo plus the analytic
    −KL(q||p(z)) (estimator B, eq. 7). ``estimator`` is ``"pathwise"``, ``"score"`` (with an
    optional ``baseline``, a float or one value per datapoint, shape (batch,)) or
    ``"score_loo"``. Vectorised: repeats are a batch dimension (processed in chunks of about
    ``max_rows`` decoder evaluations), and one autograd call per chunk yields every estimate.
    The chain rule to the encoder's weights is :func:`output_layer_moments`.
    """
    check_positive_int(repeats, "repeats")
    check_positive_int(L, "L")
    _check_estimator(estimator)
    if bound not in ("A", "B"):
        raise ValueError(f"bound={bound!r}; use 'A' (eq. 6) or 'B' (eq. 7)")
    check_model_data(model, x)
    if isinstance(baseline, torch.Tensor) and baseline.shape not in ((), x.shape[:1]):
        raise ValueError(
            f"baseline has shape {tuple(baseline.shape)}; pass a float or one value per "
            f"datapoint, shape ({x.shape[0]},)"
        )
    with torch.no_grad():
        q0 = model.encoder(x)  # any encoder returning a diagonal Gaussian
        mu, log_var = q0.mean, q0.variance.log()
    B = x.shape[0]
    chunk = max(1, max_rows // (B * L))
    out = []
    for start in range(0, repeats, chunk):
        r = min(chunk, repeats - start)
        m = mu.expand(r, -1, -1).clone().requires_grad_(True)
        s = log_var.expand(r, -1, -1).clone().requires_grad_(True)
        q = Independent(Normal(m, torch.exp(0.5 * s), validate_args=False), 1)
        f, extra = _bound_integrand(model, x, q, bound)
        surrogate = _surrogate(f, q, L, estimator, baseline) + extra
        gm, gs = torch.autograd.grad(surrogate, (m, s))
        out.append(torch.cat([gm, gs], dim=-1).detach())
    return torch.cat(out)


def _bound_integrand(model, x: torch.Tensor, q: Distribution, bound: str):
    """(f, extra): the Monte Carlo integrand and the analytic part of eq. 6 (A) or eq. 7 (B)."""
    prior = model.prior()
    if bound == "A":

        def f_a(z: torch.Tensor) -> torch.Tensor:
            return prior.log_prob(z) + model.decoder(z).log_prob(x) - q.log_prob(z)

        return f_a, 0.0

    def f_b(z: torch.Tensor) -> torch.Tensor:
        return model.decoder(z).log_prob(x)

    return f_b, -kl_divergence(q, prior).sum()


def encoder_hidden(model, x: torch.Tensor) -> torch.Tensor:
    """h = tanh(W₁x + b₁), the input of the encoder's output layer (Appendix C.2).

    ``x`` (batch, x_dim) is checked as by :func:`aevb.bound.elbo`.
    """
    check_model_data(model, x)
    return _encoder_hidden(model, x)


def _encoder_hidden(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.tanh(model.encoder.hidden(x))


@dataclass
class GradientMoments:
    """Mean and variance (over the noise) of a gradient estimate, one entry per parameter."""

    mean: torch.Tensor
    variance: torch.Tensor

    @property
    def total_variance(self) -> float:
        """tr Cov = Σ_p Var ĝ_p (the expected squared distance from the true gradient)."""
        return float(self.variance.sum())

    def snr(self, reference: torch.Tensor | None = None) -> torch.Tensor:
        """``|mean| / std`` per parameter; ``reference`` replaces the mean (e.g. a lower-variance
        estimate of the same expected gradient)."""
        return snr(self.mean if reference is None else reference, self.variance)


def output_layer_moments(model, x: torch.Tensor, grads: torch.Tensor) -> GradientMoments:
    """Mean and variance of the minibatch gradient w.r.t. the encoder's output layer
    (weights and biases producing μ and log σ²) from per-datapoint output gradients ``grads``
    (repeats, batch, 2·z_dim) of :func:`encoder_output_gradients`.

    By the chain rule ∂/∂W₂ Σ_i L⁽ⁱ⁾ = Σ_i δ⁽ⁱ⁾ h⁽ⁱ⁾ᵀ with δ⁽ⁱ⁾ = ∂L⁽ⁱ⁾/∂(μ, log σ²). The noise
    of different datapoints is independent, so Var = Σ_i Var(δ⁽ⁱ⁾) (h⁽ⁱ⁾)² exactly in
    expectation: no (repeats, parameters) tensor is ever built. ``x`` is checked as by
    :func:`aevb.bound.elbo`; ``grads`` needs at least 2 repeats (a variance).
    """
    check_model_data(model, x)
    width = 2 * int(model.prior().event_shape[-1])
    if not isinstance(grads, torch.Tensor) or grads.shape[1:] != (x.shape[0], width):
        shape = tuple(grads.shape) if isinstance(grads, torch.Tensor) else type(grads).__name__
        raise ValueError(
            f"grads is {shape}; expected (repeats, {x.shape[0]}, {width}): pass "
            "encoder_output_gradients(model, x, repeats) for the same model and x"
        )
    if grads.shape[0] < 2:
        raise ValueError(
            f"grads holds {grads.shape[0]} repeat(s); pass repeats >= 2 to estimate a variance"
        )
    h = torch.cat([_encoder_hidden(model, x), torch.ones(x.shape[0], 1)], dim=1)  # bias column
    g = grads.double()
    mean = torch.einsum("bk,bh->kh", g.mean(0), h.double())
    var = torch.einsum("bk,bh->kh", g.var(0), h.double().square())
    return GradientMoments(mean.reshape(-1), var.reshape(-1))


def gradient_moments(surrogate: Callable[[], torch.Tensor], params, n: int) -> GradientMoments:
    """Mean and variance over ``n`` independent draws of ∇ ``surrogate()`` w.r.t. ``params``
    (flattened and concatenated), accumulated on the fly (Welford's algorithm, float64).

    Like :func:`aevb.estimators.gradient_samples` but without the (n, P) matrix, so it serves
    for every parameter of a VAE (P ≈ 10⁶). Each draw calls ``surrogate()`` once: fresh noise,
    and a fresh minibatch if the surrogate draws one.
    """
    check_positive_int(n, "n")
    if n < 2:
        raise ValueError("n must be >= 2 to estimate a variance")
    params = list(params)
    mean = m2 = None
    for k in range(1, n + 1):
        grads = torch.autograd.grad(surrogate(), params, allow_unused=True)
        flat = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(grads, params, strict=True)
            ]
        ).double()
        if mean is None:
            mean, m2 = flat.clone(), torch.zeros_like(flat)
            continue
        delta = flat - mean
        mean += delta / k
        m2 += delta * (flat - mean)
    return GradientMoments(mean, m2 / (n - 1))
