"""Score-function vs pathwise gradients: unbiased, same expectation, different variance.

Many independent gradient draws are taken at once: n copies of a parameter, one per row, so the
gradient of the summed surrogate holds n independent single-sample estimates.
"""

import pytest
import torch
from torch.distributions import Exponential, Independent, Normal

from aevb.estimators import (
    elbo_integrand,
    gradient_samples,
    pathwise_surrogate,
    score_function_surrogate,
)
from aevb.linear_gaussian import linear_gaussian_model
from aevb.models import ModelSpec, build_model
from aevb.variance import variance_stderr


def _grad_mu_draws(estimator, mu0, sigma, n, baseline=0.0):
    """n independent one-sample gradients d/dμ E[z²], z ~ N(μ, σ²)."""
    mu = torch.full((n, 1), float(mu0), requires_grad=True)
    q = Independent(Normal(mu, torch.full((n, 1), float(sigma))), 1)
    kwargs = {"baseline": baseline} if estimator is score_function_surrogate else {}
    surrogate = estimator(lambda z: z.squeeze(-1) ** 2, q, 1, **kwargs)
    (g,) = torch.autograd.grad(surrogate, mu)
    return g[:, 0]


@pytest.mark.parametrize("mu0,sigma", [(0.0, 1.0), (1.0, 1.0), (1.0, 0.5)])
def test_both_estimators_unbiased_for_z_squared(mu0, sigma):
    torch.manual_seed(0)
    n = 200_000
    for est in (score_function_surrogate, pathwise_surrogate):
        g = _grad_mu_draws(est, mu0, sigma, n)
        # d/dμ E[z²] = d/dμ (μ² + σ²) = 2μ
        assert abs(float(g.mean()) - 2 * mu0) < 4 * float(g.std()) / n**0.5


@pytest.mark.parametrize("mu0,sigma", [(0.0, 1.0), (1.0, 1.0), (1.0, 0.5), (1.0, 0.1)])
def test_variances_match_closed_forms(mu0, sigma):
    torch.manual_seed(1)
    n = 400_000
    sf = _grad_mu_draws(score_function_surrogate, mu0, sigma, n)
    pw = _grad_mu_draws(pathwise_surrogate, mu0, sigma, n)
    sf_var = mu0**4 / sigma**2 + 14 * mu0**2 + 15 * sigma**2
    pw_var = 4 * sigma**2
    assert float(sf.var()) == pytest.approx(sf_var, rel=0.05)
    assert float(pw.var()) == pytest.approx(pw_var, rel=0.02)


def test_closed_form_ratios_quoted_in_the_book():
    ratio = lambda m, s: (m**4 / s**2 + 14 * m**2 + 15 * s**2) / (4 * s**2)  # noqa: E731
    assert ratio(0, 1) == pytest.approx(3.75)
    assert ratio(1, 1) == pytest.approx(7.5)
    assert ratio(1, 0.1) == pytest.approx(2853.75)


def test_baseline_keeps_score_function_unbiased_and_lowers_variance():
    torch.manual_seed(2)
    n = 200_000
    plain = _grad_mu_draws(score_function_surrogate, 1.0, 1.0, n)
    based = _grad_mu_draws(score_function_surrogate, 1.0, 1.0, n, baseline=2.0)  # b = E[f]
    assert abs(float(based.mean()) - 2.0) < 4 * float(based.std()) / n**0.5
    assert float(based.var()) < 0.6 * float(plain.var())


def test_gradient_samples_stacks_independent_draws():
    torch.manual_seed(3)
    mu, sigma, n = torch.tensor([0.5], requires_grad=True), 0.7, 2000

    def surrogate():
        return pathwise_surrogate(
            lambda z: z.square().squeeze(-1), Independent(Normal(mu, torch.full((1,), sigma)), 1)
        )

    draws = gradient_samples(surrogate, [mu], n).double()
    assert draws.shape == (n, 1)
    # pathwise d/dμ of z² is 2z = 2(μ + σε): mean 2μ, variance 4σ² over independent draws
    # (one draw repeated n times would give variance 0)
    assert abs(float(draws.mean()) - 1.0) < 4 * float(draws.std()) / n**0.5
    assert abs(float(draws.var()) - 4 * sigma**2) < 4 * float(variance_stderr(draws[:, 0]))


def test_pathwise_refuses_distributions_without_rsample():
    class NoRsample(Exponential):
        has_rsample = False

    with pytest.raises(TypeError, match="score_function_surrogate"):
        pathwise_surrogate(lambda z: z, NoRsample(torch.tensor([1.0])), 1)


def _per_row_encoder_gradients(model, x, n, estimator):
    """n one-sample gradients of the bound w.r.t. the encoder's outputs (μ, log σ²) for each
    datapoint: the gradient w.r.t. the output layer's bias, one draw per row."""
    xs = x.repeat(n, 1)
    mu, log_var = model.encoder.params(xs)
    mu, log_var = mu.detach().requires_grad_(True), log_var.detach().requires_grad_(True)
    q = Independent(Normal(mu, (0.5 * log_var).exp()), 1)
    s = estimator(elbo_integrand(model, xs, q), q, 1)
    g_mu, g_lv = torch.autograd.grad(s, (mu, log_var))
    return torch.cat([g_mu, g_lv], -1).reshape(n, x.shape[0], -1)


def test_elbo_gradients_agree_in_expectation_inside_a_vae():
    """Naive and SGVB gradients of the bound w.r.t. the encoder's outputs agree on average,
    and the naive one has the larger variance (Section 2.2)."""
    torch.manual_seed(3)
    model = build_model(ModelSpec(x_dim=8, z_dim=2, hidden=6, init_std=0.3))
    x = torch.bernoulli(torch.full((4, 8), 0.4))
    n = 100_000
    naive = _per_row_encoder_gradients(model, x, n, score_function_surrogate)
    repar = _per_row_encoder_gradients(model, x, n, pathwise_surrogate)
    diff = naive.mean(0) - repar.mean(0)
    stderr = (naive.var(0) / n + repar.var(0) / n).sqrt()
    assert (diff.abs() < 4.5 * stderr).all(), (diff, stderr)
    assert (naive.var(0) > repar.var(0)).all()


def test_elbo_gradient_on_linear_gaussian_model_matches_exact_gradient():
    torch.manual_seed(4)
    model = linear_gaussian_model(x_dim=3, z_dim=2, sigma=0.8, seed=1)
    x = model.sample(2, generator=torch.Generator().manual_seed(0))
    n = 100_000
    repar = _per_row_encoder_gradients(model_as_encoder_params(model), x, n, pathwise_surrogate)
    m = torch.zeros(2, 2, requires_grad=True)  # q's mean per datapoint (A = 0, c = 0)
    W, b = model.decoder.W.detach(), model.decoder.b.detach()
    s2 = model.decoder.log_sigma.exp().detach() ** 2
    # E_q[log p(x, z)] depends on m through -m²/2 - |x - b - W m|²/(2 s²)
    exact = -0.5 * (m**2).sum() - 0.5 * ((x - b - m @ W.T) ** 2).sum() / s2
    (g,) = torch.autograd.grad(exact, m)
    est = repar.mean(0)[:, :2]
    tol = 4 * repar.std(0)[:, :2] / n**0.5
    assert ((est - g).abs() < tol).all(), (est, g)


def model_as_encoder_params(model):
    """Give the linear-Gaussian encoder the ``params(x) -> (μ, log σ²)`` method of the MLP one."""

    class Enc(torch.nn.Module):
        def params(self, x):
            q = model.encoder(x)
            return q.mean, q.variance.log()

    class M:
        encoder = Enc()
        decoder = model.decoder
        prior = model.prior

    return M()
