"""The reparameterization trick's three families of distributions (Section 2.4).

A random variable z ~ q_φ(z) is *reparameterized* when it can be written z = g_φ(ε) with
ε ~ p(ε) a fixed noise distribution: then E_{q_φ}[f(z)] = E_{p(ε)}[f(g_φ(ε))] and its gradient
is E_{p(ε)}[∇_φ f(g_φ(ε))], estimated by Monte Carlo (eq. 4 – 5). The paper names three ways to
find g_φ:

1. **Tractable inverse CDF** — ε ~ U(0, 1), g_φ(ε) = F_φ⁻¹(ε). The paper's examples:
   Exponential, Cauchy, Logistic, Rayleigh, Pareto, Weibull, Reciprocal, Gompertz, Gumbel and
   Erlang. Here: :data:`EXPONENTIAL`, :data:`CAUCHY`, :data:`GUMBEL`.
2. **Location-scale** — ε from the family's standard member, g_φ(ε) = location + scale · ε.
   Examples: Normal, Laplace, Elliptical, Student's t, Logistic, Uniform, Triangular.
   Here: :data:`NORMAL`, :data:`LAPLACE`.
3. **Composition** — z is a function of several auxiliary variables that are themselves
   reparameterized. Examples: Log-Normal (exponentiation of a normal), Gamma (a sum over
   exponentials), Dirichlet, Beta, Chi-Squared, F. Here: :data:`LOG_NORMAL` = exp(Normal),
   :data:`ERLANG` = a sum of k Exponentials (a Gamma with integer shape), :data:`CHI_SQUARED`
   = a sum of k squared standard normals.

Each :class:`Reparameterization` pairs the noise p(ε), the transform g_φ(ε) and the
:mod:`torch.distributions` object it must reproduce, so its samples can be tested
(:func:`ks_test`) and its pathwise gradients checked against finite differences with common
random numbers (:func:`pathwise_gradient`, :func:`finite_difference_gradient`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import (
    Cauchy,
    Chi2,
    Distribution,
    Exponential,
    Gamma,
    Gumbel,
    Laplace,
    LogNormal,
    Normal,
)

from ._checks import check_finite, check_positive_int

FAMILIES: tuple[str, ...] = ("inverse-cdf", "location-scale", "composition")

Params = dict[str, float | torch.Tensor]

# ----------------------------------------------------------------------------------------------
# Noise p(ε) and the transforms g_φ(ε).
# ----------------------------------------------------------------------------------------------


def standard_uniform(shape: tuple[int, ...], generator: torch.Generator | None = None):
    """ε ~ U(0, 1), float64, strictly inside (0, 1) so that every inverse CDF is finite."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    tiny = torch.finfo(torch.float64).eps
    return u.clamp(tiny, 1.0 - tiny)


def standard_normal(shape: tuple[int, ...], generator: torch.Generator | None = None):
    """ε ~ N(0, 1), float64."""
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def exponential_icdf(u: torch.Tensor, rate) -> torch.Tensor:
    """F⁻¹(u) = −log(1 − u)/λ for the Exponential(λ) distribution."""
    return -torch.log1p(-u) / rate


def cauchy_icdf(u: torch.Tensor, loc, scale) -> torch.Tensor:
    """F⁻¹(u) = x₀ + γ tan(π(u − ½)) for the Cauchy(x₀, γ) distribution."""
    return loc + scale * torch.tan(math.pi * (u - 0.5))


def gumbel_icdf(u: torch.Tensor, loc, scale) -> torch.Tensor:
    """F⁻¹(u) = μ − β log(−log u) for the Gumbel(μ, β) distribution."""
    return loc - scale * torch.log(-torch.log(u))


def standard_laplace(shape: tuple[int, ...], generator: torch.Generator | None = None):
    """ε ~ Laplace(0, 1) by its inverse CDF: ε = −sign(u − ½) log(1 − 2|u − ½|)."""
    v = standard_uniform(shape, generator) - 0.5
    return -torch.sign(v) * torch.log1p(-2 * v.abs())


def location_scale(eps: torch.Tensor, loc, scale) -> torch.Tensor:
    """g(ε) = location + scale · ε: the second family (the Gaussian case is eq. 4's example)."""
    return loc + scale * eps


# ----------------------------------------------------------------------------------------------
# The reparameterizations.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reparameterization:
    """z = g_φ(ε), ε ~ p(ε): one worked distribution of Section 2.4.

    ``noise(n, generator, **params)`` draws n noise variables (the shape may depend on an
    integer parameter such as k); ``transform(eps, **params)`` is g_φ, differentiable in the
    continuous parameters; ``reference(**params)`` is the :mod:`torch.distributions` object
    with the same law (for tests); ``continuous`` names the parameters one may differentiate.
    """

    name: str
    family: str
    formula: str
    noise: Callable[..., torch.Tensor]
    transform: Callable[..., torch.Tensor]
    reference: Callable[..., Distribution]
    continuous: tuple[str, ...]

    def rsample(self, n: int, generator: torch.Generator | None = None, **params) -> torch.Tensor:
        """n draws of z = g_φ(ε), differentiable w.r.t. tensor parameters: shape (n,)."""
        check_positive_int(n, "n")
        _check_params(self, params)
        return self.transform(self.noise(n, generator, **params), **params)


# Parameters that must be > 0 (scales and rates); ``k`` is checked by the compositions.
_POSITIVE = ("rate", "scale", "sigma")


def _check_params(rep: Reparameterization, params: dict) -> None:
    """Raise a clear error unless ``params`` are exactly ``rep``'s, each finite (scales > 0)."""
    expected = tuple(inspect.signature(rep.transform).parameters)[1:]  # after eps
    if set(params) != set(expected):
        unknown = sorted(set(params) - set(expected))
        missing = [n for n in expected if n not in params]
        what = "; ".join(
            part
            for part in (
                f"unknown {', '.join(unknown)}" if unknown else "",
                f"missing {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise ValueError(
            f"{rep.name} takes the parameters {', '.join(expected)} ({what}); "
            f"pass e.g. {', '.join(f'{n}=1.0' for n in expected)}"
        )
    for name, value in params.items():
        if name == "k":
            continue
        v = torch.as_tensor(value, dtype=torch.float64).detach()
        check_finite(v, name, "pass a finite value")
        if name in _POSITIVE and not bool((v > 0).all()):
            raise ValueError(f"{name}={value!r}; {rep.name} needs {name} > 0")


def _uniform_noise(n, generator, **params):
    return standard_uniform((n,), generator)


def _float64(family, *names: str):
    """``family`` (a ``torch.distributions`` class) at the parameters ``names`` (given by
    position or by name) made float64 tensors."""

    def reference(*args, **kwargs):
        given = dict(zip(names, args, strict=False)) | kwargs
        return family(*(torch.as_tensor(given[n], dtype=torch.float64) for n in names))

    return reference


EXPONENTIAL = Reparameterization(
    name="Exponential(rate)",
    family="inverse-cdf",
    formula="z = −log(1 − ε)/λ,  ε ~ U(0, 1)",
    noise=_uniform_noise,
    transform=lambda eps, rate: exponential_icdf(eps, rate),
    reference=lambda rate: Exponential(torch.as_tensor(rate, dtype=torch.float64)),
    continuous=("rate",),
)

CAUCHY = Reparameterization(
    name="Cauchy(loc, scale)",
    family="inverse-cdf",
    formula="z = x₀ + γ tan(π(ε − ½)),  ε ~ U(0, 1)",
    noise=_uniform_noise,
    transform=lambda eps, loc, scale: cauchy_icdf(eps, loc, scale),
    reference=_float64(Cauchy, "loc", "scale"),
    continuous=("loc", "scale"),
)

GUMBEL = Reparameterization(
    name="Gumbel(loc, scale)",
    family="inverse-cdf",
    formula="z = μ − β log(−log ε),  ε ~ U(0, 1)",
    noise=_uniform_noise,
    transform=lambda eps, loc, scale: gumbel_icdf(eps, loc, scale),
    reference=_float64(Gumbel, "loc", "scale"),
    continuous=("loc", "scale"),
)

NORMAL = Reparameterization(
    name="Normal(loc, scale)",
    family="location-scale",
    formula="z = μ + σ ε,  ε ~ N(0, 1)",
    noise=lambda n, generator, **p: standard_normal((n,), generator),
    transform=lambda eps, loc, scale: location_scale(eps, loc, scale),
    reference=_float64(Normal, "loc", "scale"),
    continuous=("loc", "scale"),
)

LAPLACE = Reparameterization(
    name="Laplace(loc, scale)",
    family="location-scale",
    formula="z = μ + b ε,  ε ~ Laplace(0, 1)",
    noise=lambda n, generator, **p: standard_laplace((n,), generator),
    transform=lambda eps, loc, scale: location_scale(eps, loc, scale),
    reference=_float64(Laplace, "loc", "scale"),
    continuous=("loc", "scale"),
)

LOG_NORMAL = Reparameterization(
    name="LogNormal(mu, sigma)",
    family="composition",
    formula="z = exp(μ + σ ε),  ε ~ N(0, 1)",
    noise=lambda n, generator, **p: standard_normal((n,), generator),
    transform=lambda eps, mu, sigma: torch.exp(location_scale(eps, mu, sigma)),
    reference=_float64(LogNormal, "mu", "sigma"),
    continuous=("mu", "sigma"),
)


def _k(k) -> int:
    if isinstance(k, torch.Tensor):
        k = k.item()
    if int(k) != k or k < 1:
        raise ValueError(f"k={k!r}; the composition needs a whole number of terms k >= 1")
    return int(k)


ERLANG = Reparameterization(
    name="Erlang(k, rate)",
    family="composition",
    formula="z = Σ_{i=1}^{k} −log(1 − ε_i)/λ,  ε_i ~ U(0, 1)",
    noise=lambda n, generator, k, **p: standard_uniform((n, _k(k)), generator),
    transform=lambda eps, k, rate: exponential_icdf(eps, rate).sum(-1),
    reference=lambda k, rate: Gamma(
        torch.as_tensor(float(_k(k)), dtype=torch.float64),
        torch.as_tensor(rate, dtype=torch.float64),
    ),
    continuous=("rate",),
)

CHI_SQUARED = Reparameterization(
    name="ChiSquared(k)",
    family="composition",
    formula="z = Σ_{i=1}^{k} ε_i²,  ε_i ~ N(0, 1)",
    noise=lambda n, generator, k: standard_normal((n, _k(k)), generator),
    transform=lambda eps, k: eps.square().sum(-1),
    reference=lambda k: Chi2(torch.as_tensor(float(_k(k)), dtype=torch.float64)),
    continuous=(),
)

REPARAMETERIZATIONS: dict[str, Reparameterization] = {
    "exponential": EXPONENTIAL,
    "cauchy": CAUCHY,
    "gumbel": GUMBEL,
    "normal": NORMAL,
    "laplace": LAPLACE,
    "lognormal": LOG_NORMAL,
    "erlang": ERLANG,
    "chi2": CHI_SQUARED,
}


def by_family(family: str) -> list[Reparameterization]:
    """The worked examples of one family (``"inverse-cdf"``, ``"location-scale"``,
    ``"composition"``)."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}; use one of {', '.join(FAMILIES)}")
    return [r for r in REPARAMETERIZATIONS.values() if r.family == family]


# ----------------------------------------------------------------------------------------------
# Checks: the samples' law, and the pathwise gradient.
# ----------------------------------------------------------------------------------------------


def ks_test(samples: torch.Tensor, reference: Distribution) -> tuple[float, float]:
    """The one-sample Kolmogorov–Smirnov test of ``samples`` against ``reference.cdf``
    (:func:`scipy.stats.kstest`): returns (statistic D_n, p-value)."""
    from scipy import stats

    if not isinstance(samples, torch.Tensor) or samples.dim() != 1 or samples.numel() == 0:
        shape = (
            tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        )
        raise ValueError(f"samples is {shape}; pass a non-empty 1-D tensor (samples.reshape(-1))")
    check_finite(samples, "samples", "drop or fix the non-finite draws")
    if not isinstance(reference, Distribution):
        raise TypeError(
            f"reference must be a torch.distributions.Distribution, got "
            f"{type(reference).__name__}; pass e.g. rep.reference(**params)"
        )

    def cdf(v):
        return reference.cdf(torch.as_tensor(v, dtype=torch.float64)).numpy()

    result = stats.kstest(samples.detach().double().numpy(), cdf)
    return float(result.statistic), float(result.pvalue)


def _check_eps(eps: torch.Tensor) -> None:
    if not isinstance(eps, torch.Tensor) or not eps.is_floating_point():
        what = eps.dtype if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise TypeError(f"eps is {what}; pass float noise from rep.noise(n, generator, **params)")
    check_finite(eps, "eps", "draw it from rep.noise(n, generator, **params)")


def _tensors(params: Params, wrt: tuple[str, ...]) -> dict[str, torch.Tensor | float]:
    out: dict[str, torch.Tensor | float] = {}
    for name, value in params.items():
        if name in wrt:
            out[name] = torch.tensor(float(value), dtype=torch.float64, requires_grad=True)
        else:
            out[name] = value
    return out


def pathwise_gradient(
    rep: Reparameterization,
    f: Callable[[torch.Tensor], torch.Tensor],
    eps: torch.Tensor,
    **params,
) -> dict[str, float]:
    """The pathwise (reparameterized) estimate (1/n) Σ ∇_φ f(g_φ(ε_i)) over the given noise
    ``eps``, for every continuous parameter: {name: derivative}."""
    _check_params(rep, params)
    _check_eps(eps)
    wrt = tuple(n for n in rep.continuous if n in params)
    if not wrt:
        raise ValueError(f"{rep.name} has no continuous parameter to differentiate")
    p = _tensors(params, wrt)
    value = f(rep.transform(eps, **p)).mean()
    grads = torch.autograd.grad(value, [p[n] for n in wrt])
    return {n: float(g) for n, g in zip(wrt, grads, strict=True)}


def finite_difference_gradient(
    rep: Reparameterization,
    f: Callable[[torch.Tensor], torch.Tensor],
    eps: torch.Tensor,
    h: float = 1e-5,
    **params,
) -> dict[str, float]:
    """Central differences [F(φ + h) − F(φ − h)]/(2h) of F(φ) = (1/n) Σ f(g_φ(ε_i)) with the
    *same* noise ``eps`` (common random numbers): equal to :func:`pathwise_gradient` up to
    O(h²), which checks g_φ's derivative independently of autograd."""
    _check_params(rep, params)
    _check_eps(eps)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"h={h!r}; pass a finite step > 0, e.g. 1e-5")
    out = {}
    with torch.no_grad():
        for name in rep.continuous:
            if name not in params:
                continue
            up, down = dict(params), dict(params)
            up[name] = float(params[name]) + h
            down[name] = float(params[name]) - h
            hi = f(rep.transform(eps, **up)).mean()
            lo = f(rep.transform(eps, **down)).mean()
            out[name] = float((hi - lo) / (2 * h))
    return out
