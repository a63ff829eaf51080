"""The three families of Section 2.4: samples follow the right law, gradients are right."""

import math

import pytest
import torch

from aevb import reparameterization as R

CASES = [
    ("exponential", {"rate": 2.0}),
    ("cauchy", {"loc": 1.0, "scale": 0.5}),
    ("gumbel", {"loc": 0.3, "scale": 2.0}),
    ("normal", {"loc": 1.0, "scale": 2.0}),
    ("laplace", {"loc": -1.0, "scale": 0.7}),
    ("lognormal", {"mu": 0.2, "sigma": 0.5}),
    ("erlang", {"k": 3, "rate": 1.5}),
    ("chi2", {"k": 4}),
]


def test_every_family_has_examples():
    for family in R.FAMILIES:
        assert len(R.by_family(family)) >= 2
    with pytest.raises(ValueError, match="family"):
        R.by_family("magic")


@pytest.mark.parametrize("name,params", CASES)
def test_samples_pass_kolmogorov_smirnov(name, params):
    rep = R.REPARAMETERIZATIONS[name]
    z = rep.rsample(5000, torch.Generator().manual_seed(0), **params)
    assert z.shape == (5000,)
    _, p = R.ks_test(z, rep.reference(**params))
    assert p > 0.01


def test_kolmogorov_smirnov_rejects_a_wrong_sampler():
    z = R.EXPONENTIAL.rsample(5000, torch.Generator().manual_seed(0), rate=2.0)
    _, p = R.ks_test(z, R.EXPONENTIAL.reference(rate=1.0))
    assert p < 1e-6


CONTINUOUS = [c for c in CASES if R.REPARAMETERIZATIONS[c[0]].continuous]


@pytest.mark.parametrize("name,params", CONTINUOUS)
def test_pathwise_gradient_equals_finite_differences(name, params):
    rep = R.REPARAMETERIZATIONS[name]
    eps = rep.noise(2000, torch.Generator().manual_seed(1), **params)
    auto = R.pathwise_gradient(rep, torch.tanh, eps, **params)
    fd = R.finite_difference_gradient(rep, torch.tanh, eps, **params)
    assert auto.keys() == fd.keys() == set(rep.continuous)
    for k in auto:
        assert auto[k] == pytest.approx(fd[k], abs=1e-6, rel=1e-5)


@pytest.mark.parametrize(
    "rep,params,f,closed",
    [
        # d/dλ E[z] = d/dλ (1/λ) = −1/λ²
        (R.EXPONENTIAL, {"rate": 2.0}, lambda z: z, {"rate": -0.25}),
        # d/db E[(z − μ)²] = d/db 2b² = 4b; d/dμ = 0
        (R.LAPLACE, {"loc": 1.0, "scale": 0.5}, lambda z: (z - 1.0) ** 2, {"scale": 2.0}),
        # d/dσ E[z] = d/dσ exp(μ + σ²/2) = σ exp(μ + σ²/2)
        (
            R.LOG_NORMAL,
            {"mu": 0.1, "sigma": 0.4},
            lambda z: z,
            {"mu": math.exp(0.18), "sigma": 0.4 * math.exp(0.18)},
        ),
        # d/dλ E[z] = d/dλ k/λ = −k/λ²
        (R.ERLANG, {"k": 3, "rate": 1.5}, lambda z: z, {"rate": -3 / 1.5**2}),
    ],
)
def test_pathwise_gradient_unbiased_against_closed_form(rep, params, f, closed):
    n = 40_000
    eps = rep.noise(n, torch.Generator().manual_seed(2), **params)
    # per-sample gradients to get a standard error
    wrt = [k for k in rep.continuous if k in closed]
    shape = (n,) + (1,) * (eps.dim() - 1)  # compositions draw (n, k) noise
    ps = {
        k: (torch.full(shape, float(v), dtype=torch.float64, requires_grad=True) if k in wrt else v)
        for k, v in params.items()
    }
    grads = torch.autograd.grad(f(rep.transform(eps, **ps)).sum(), [ps[k] for k in wrt])
    for k, g in zip(wrt, grads, strict=True):
        g = g.reshape(-1)
        se = float(g.std()) / n**0.5
        assert abs(float(g.mean()) - closed[k]) < 4 * se + 1e-12, k


def test_rsample_is_differentiable_and_errors_are_clear():
    rate = torch.tensor(2.0, requires_grad=True)
    z = R.EXPONENTIAL.rsample(10, torch.Generator().manual_seed(0), rate=rate)
    (g,) = torch.autograd.grad(z.sum(), rate)
    assert torch.isfinite(g)
    with pytest.raises(ValueError, match="k"):
        R.CHI_SQUARED.rsample(10, k=2.5)
    with pytest.raises(ValueError, match="continuous"):
        R.pathwise_gradient(R.CHI_SQUARED, torch.tanh, torch.zeros(3, 2), k=2)
    u = R.standard_uniform((100_000,), torch.Generator().manual_seed(0))
    assert 0 < float(u.min()) and float(u.max()) < 1
