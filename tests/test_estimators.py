"""Score-function vs pathwise gradients: unbiased, same expectation, different variance."""

import pytest
import torch
from torch.distributions import Exponential, Independent, Normal

from aevb.estimators import (
    gradient_samples,
    naive_elbo_surrogate,
    pathwise_surrogate,
    reparameterized_elbo_surrogate,
    score_function_surrogate,
)
from aevb.linear_gaussian import linear_gaussian_model
from aevb.models import ModelSpec, build_model


def _grad_mu_samples(estimator, mu0, sigma, n, f=lambda z: z.squeeze(-1) ** 2):
    mu = torch.tensor([mu0], requires_grad=True)

    def surrogate():
        q = Independent(Normal(mu, torch.tensor([sigma])), 1)
        return estimator(f, q, 1)

    return gradient_samples(surrogate, [mu], n)[:, 0]


@pytest.mark.parametrize("mu0,sigma", [(0.0, 1.0), (1.0, 1.0), (1.0, 0.5)])
def test_both_estimators_unbiased_for_z_squared(mu0, sigma):
    torch.manual_seed(0)
    n = 20000
    for est in (score_function_surrogate, pathwise_surrogate):
        g = _grad_mu_samples(est, mu0, sigma, n)
        # d/dμ E[z²] = d/dμ (μ² + σ²) = 2μ
        assert abs(float(g.mean()) - 2 * mu0) < 4 * float(g.std()) / n**0.5


@pytest.mark.parametrize("mu0,sigma", [(0.0, 1.0), (1.0, 1.0), (1.0, 0.5)])
def test_variances_match_closed_forms(mu0, sigma):
    torch.manual_seed(1)
    n = 40000
    sf = _grad_mu_samples(score_function_surrogate, mu0, sigma, n)
    pw = _grad_mu_samples(pathwise_surrogate, mu0, sigma, n)
    sf_var = mu0**4 / sigma**2 + 14 * mu0**2 + 15 * sigma**2
    pw_var = 4 * sigma**2
    # the sample variance of a heavy-tailed estimator: allow 10%
    assert float(sf.var()) == pytest.approx(sf_var, rel=0.1)
    assert float(pw.var()) == pytest.approx(pw_var, rel=0.05)


def test_baseline_keeps_score_function_unbiased_and_lowers_variance():
    torch.manual_seed(2)
    n = 20000
    mu = torch.tensor([1.0], requires_grad=True)

    def make(baseline):
        def surrogate():
            q = Independent(Normal(mu, torch.tensor([1.0])), 1)
            return score_function_surrogate(lambda z: z.squeeze(-1) ** 2, q, 1, baseline)

        return surrogate

    plain = gradient_samples(make(0.0), [mu], n)[:, 0]
    based = gradient_samples(make(2.0), [mu], n)[:, 0]  # b = E[f] = μ² + σ²
    assert abs(float(based.mean()) - 2.0) < 4 * float(based.std()) / n**0.5
    assert float(based.var()) < 0.6 * float(plain.var())


def test_pathwise_refuses_distributions_without_rsample():
    class NoRsample(Exponential):
        has_rsample = False

    with pytest.raises(TypeError, match="score_function_surrogate"):
        pathwise_surrogate(lambda z: z, NoRsample(torch.tensor([1.0])), 1)


def test_elbo_gradients_agree_in_expectation_inside_a_vae():
    """Naive and SGVB gradients of the bound w.r.t. the encoder's output bias agree."""
    torch.manual_seed(3)
    model = build_model(ModelSpec(x_dim=8, z_dim=2, hidden=6, init_std=0.3))
    x = torch.bernoulli(torch.full((4, 8), 0.4))
    param = model.encoder.out.bias
    n = 6000
    naive = gradient_samples(lambda: naive_elbo_surrogate(model, x), [param], n)
    repar = gradient_samples(lambda: reparameterized_elbo_surrogate(model, x), [param], n)
    diff = naive.mean(0) - repar.mean(0)
    stderr = (naive.var(0) / n + repar.var(0) / n).sqrt()
    assert (diff.abs() < 4.5 * stderr).all(), (diff, stderr)
    assert (naive.var(0) > repar.var(0)).all()


def test_elbo_gradients_on_linear_gaussian_model_match_exact_gradient():
    torch.manual_seed(4)
    model = linear_gaussian_model(x_dim=3, z_dim=2, sigma=0.8, seed=1)
    x = model.sample(2, generator=torch.Generator().manual_seed(0))
    p = model.encoder.c
    n = 5000
    repar = gradient_samples(lambda: reparameterized_elbo_surrogate(model, x, L=1), [p], n)
    # exact: L is quadratic in the mean m of q; dL/dc = Σ_i ∇_m E_q[log p(x_i, z)] at m = c (A = 0)
    m = p.detach().clone().requires_grad_(True)
    W, b, s2 = model.decoder.W.detach(), model.decoder.b.detach(), model.decoder.log_sigma.exp() ** 2
    exact_L = sum(
        -0.5 * (m**2).sum() - 0.5 * ((xi - b - W @ m) ** 2).sum() / s2 for xi in x
    )  # the terms that depend on m
    (g,) = torch.autograd.grad(exact_L, m)
    assert torch.allclose(repar.mean(0), g.detach(), atol=4 * float(repar.std(0).max()) / n**0.5)
