"""Variance and SNR helpers: closed forms against quadrature and simulation (CLT bounds)."""

import math

import pytest
import torch

import aevb
from aevb import variance as V
from aevb.linear_gaussian import linear_gaussian_model
from aevb.models import ModelSpec, build_model


def _square(z):
    return z.square().sum(-1)


@pytest.mark.parametrize("mu,sigma,ratio", [(0.0, 1.0, 3.75), (1.0, 1.0, 7.5), (1.0, 0.1, 2853.75)])
def test_square_closed_forms_and_ratios(mu, sigma, ratio):
    sf, pw = V.square_score_variance(mu, sigma), V.square_pathwise_variance(mu, sigma)
    assert sf == pytest.approx(mu**4 / sigma**2 + 14 * mu**2 + 15 * sigma**2)
    assert pw == pytest.approx(4 * sigma**2)
    assert sf / pw == pytest.approx(ratio)
    # quadrature is exact for polynomials
    assert V.score_variance_quadrature(lambda z: z**2, mu, sigma) == pytest.approx(sf, rel=1e-9)
    assert V.pathwise_variance_quadrature(lambda z: 2 * z, mu, sigma) == pytest.approx(pw, rel=1e-9)


@pytest.mark.parametrize("mu,sigma", [(0.0, 1.0), (1.0, 1.0), (1.0, 0.1)])
@pytest.mark.parametrize("estimator", ["score", "pathwise"])
def test_simulated_variance_within_clt_bounds(mu, sigma, estimator):
    gen = torch.Generator().manual_seed(0)
    n = 30_000
    d = V.gaussian_gradient_draws(_square, mu, sigma, n, estimator=estimator, generator=gen)[:, 0]
    assert abs(float(d.mean()) - 2 * mu) < 4 * float(V.mean_stderr(d))  # unbiased: d/dμ = 2μ
    closed = (V.square_score_variance if estimator == "score" else V.square_pathwise_variance)(
        mu, sigma
    )
    assert abs(float(d.var()) - closed) < 4 * float(V.variance_stderr(d))


@pytest.mark.parametrize("b", [0.0, 1.0, "opt"])
def test_baseline_closed_form(b):
    mu, sigma = 1.0, 0.5
    b = V.square_optimal_baseline(mu, sigma) if b == "opt" else b
    closed = V.square_score_variance(mu, sigma, baseline=b)
    quad = V.score_variance_quadrature(lambda z: z**2, mu, sigma, baseline=b)
    assert closed == pytest.approx(quad, rel=1e-9)
    gen = torch.Generator().manual_seed(1)
    d = V.gaussian_gradient_draws(
        _square, mu, sigma, 50_000, estimator="score", baseline=b, generator=gen
    )[:, 0]
    assert abs(float(d.var()) - closed) < 4 * float(V.variance_stderr(d))
    assert abs(float(d.mean()) - 2 * mu) < 4 * float(V.mean_stderr(d))


def test_optimal_baseline_is_the_minimum():
    mu, sigma = 0.7, 0.3
    best = V.square_optimal_baseline(mu, sigma)
    v = V.square_score_variance(mu, sigma, baseline=best)
    assert v == pytest.approx(8 * mu**2 + 6 * sigma**2)
    for delta in (-0.1, 0.1):
        assert V.square_score_variance(mu, sigma, baseline=best + delta) > v


def test_variance_divides_by_L():
    assert V.square_score_variance(1.0, 1.0, L=10) == pytest.approx(3.0)
    assert V.square_pathwise_variance(1.0, 1.0, L=4) == pytest.approx(1.0)
    gen = torch.Generator().manual_seed(2)
    d = V.gaussian_gradient_draws(_square, 1.0, 1.0, 20_000, L=10, estimator="score", generator=gen)
    assert abs(float(d.var()) - 3.0) < 4 * float(V.variance_stderr(d))


@pytest.mark.parametrize("D", [1, 3, 8])
def test_sum_of_squares_dimension_closed_form(D):
    sigma = 0.7
    closed = V.sum_of_squares_score_variance(torch.zeros(D), sigma)
    assert closed == pytest.approx(sigma**2 * (D + 2) * (D + 4))
    gen = torch.Generator().manual_seed(D)
    d = V.gaussian_gradient_draws(
        _square, torch.zeros(D), sigma, 20_000, estimator="score", generator=gen
    )
    assert abs(float(d[:, 0].var()) - closed) < 4 * float(V.variance_stderr(d[:, 0]))


def test_sum_of_squares_general_mean():
    mu, sigma = torch.tensor([0.5, -1.0, 2.0]), 0.5
    gen = torch.Generator().manual_seed(3)
    d = V.gaussian_gradient_draws(_square, mu, sigma, 40_000, estimator="score", generator=gen)
    se = V.variance_stderr(d)
    for i in range(3):
        closed = V.sum_of_squares_score_variance(mu, sigma, index=i)
        assert abs(float(d[:, i].var()) - closed) < 4 * float(se[i])


def test_sin_quadrature_matches_simulation():
    f = V.get_test_function("sin(z)")
    gen = torch.Generator().manual_seed(4)
    for est, closed in (
        ("score", V.score_variance_quadrature(f.f, 1.0, 0.5)),
        ("pathwise", V.pathwise_variance_quadrature(f.df, 1.0, 0.5)),
    ):
        d = V.gaussian_gradient_draws(
            lambda z: f.f(z).sum(-1), 1.0, 0.5, 20_000, estimator=est, generator=gen
        )[:, 0]
        assert abs(float(d.var()) - closed) < 4 * float(V.variance_stderr(d))
        true = V.true_gradient_quadrature(f.df, 1.0, 0.5)
        assert true == pytest.approx(math.cos(1.0) * math.exp(-0.125))
        assert abs(float(d.mean()) - true) < 4 * float(V.mean_stderr(d))


def test_leave_one_out_unbiased_and_lower_variance():
    gen = torch.Generator().manual_seed(5)
    d = V.gaussian_gradient_draws(
        _square, 1.0, 0.5, 20_000, L=8, estimator="score_loo", generator=gen
    )[:, 0]
    assert abs(float(d.mean()) - 2.0) < 4 * float(V.mean_stderr(d))
    # between the best constant baseline and no baseline
    assert (
        V.square_score_variance(1.0, 0.5, V.square_optimal_baseline(1.0, 0.5), L=8)
        < float(d.var())
        < 0.6 * V.square_score_variance(1.0, 0.5, L=8)
    )
    with pytest.raises(ValueError, match="L >= 2"):
        V.leave_one_out_baseline(torch.zeros(1, 3))


def test_generator_makes_draws_reproducible_and_errors_are_clear():
    a = V.gaussian_gradient_draws(_square, 1.0, 1.0, 10, generator=torch.Generator().manual_seed(9))
    b = V.gaussian_gradient_draws(_square, 1.0, 1.0, 10, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="estimator"):
        V.gaussian_gradient_draws(_square, 1.0, 1.0, 10, estimator="magic")
    with pytest.raises(KeyError, match="z\\^2"):
        V.get_test_function("cos")


def test_variance_stderr_and_snr():
    torch.manual_seed(0)
    d = torch.randn(100_000, 2) * torch.tensor([1.0, 3.0])
    se = V.variance_stderr(d)
    # Var of the sample variance of a normal: 2σ⁴/n
    assert torch.allclose(se, torch.tensor([1.0, 9.0]).double() * (2 / 1e5) ** 0.5, rtol=0.05)
    s = V.snr(torch.tensor([2.0, 0.0]), torch.tensor([4.0, 0.0]))
    assert s.tolist() == [1.0, 0.0]


def _linear_gaussian_bound_at(model, x, mu, log_var):
    """The closed-form bound of the linear-Gaussian model as a function of q's (μ, log σ²)."""
    from torch.distributions import Independent, Normal, kl_divergence

    q = Independent(Normal(mu, (0.5 * log_var).exp()), 1)
    W, b = model.decoder.W, model.decoder.b
    s2 = (2 * model.decoder.log_sigma).exp()
    resid = x - mu @ W.T - b
    ell = -0.5 * x.shape[-1] * torch.log(2 * math.pi * s2) - (
        resid.square().sum(-1) + (q.variance * W.square().sum(0)).sum(-1)
    ) / (2 * s2)
    return ell - kl_divergence(q, model.prior())


def test_encoder_output_gradients_unbiased_in_linear_gaussian():
    """Score and pathwise estimates of ∇_(μ, log σ²) L agree with the exact gradient."""
    from aevb.intractable import linear_gaussian_bound

    model = linear_gaussian_model(4, 2, 0.5, seed=0)
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.encoder.A.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        q = model.encoder(x)
    mu = q.mean.clone().requires_grad_(True)
    lv = q.variance.log().clone().requires_grad_(True)
    value = _linear_gaussian_bound_at(model, x, mu, lv)
    assert torch.allclose(value, linear_gaussian_bound(model, x))
    exact = torch.cat(torch.autograd.grad(value.sum(), (mu, lv)), -1).double()
    torch.manual_seed(0)
    n = 2000
    for est, bound in (
        ("pathwise", "A"),
        ("pathwise", "B"),
        ("score", "A"),
        ("score", "B"),
        ("score_loo", "A"),
    ):
        L = 4 if est == "score_loo" else 1
        g = V.encoder_output_gradients(model, x, n, L=L, estimator=est, bound=bound).double()
        se = g.std(0) / n**0.5
        assert ((g.mean(0) - exact).abs() < 4.5 * se + 1e-4).all(), (est, bound)


def test_output_layer_moments_chain_rule():
    """output_layer_moments (chain rule from per-datapoint output gradients) against autograd's
    moments of the same gradient, weights and bias column alike (CLT bounds, n = 4000)."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(x_dim=12, z_dim=3, hidden=7, init_std=0.3))
    x = torch.rand(5, 12).round()
    n = 4000
    g = V.encoder_output_gradients(model, x, n, estimator="pathwise", bound="B")
    assert g.shape == (n, 5, 6)
    moments = V.output_layer_moments(model, x, g)
    assert moments.mean.shape == (6 * 8,)
    assert moments.snr().shape == moments.mean.shape
    out = model.encoder.out
    torch.manual_seed(1)
    ref = V.gradient_moments(lambda: aevb.elbo(model, x, 1, "B").sum(), [out.weight, out.bias], n)

    def as_table(flat):  # (6, 7) weights then (6,) biases -> (6, 8), bias last
        return torch.cat([flat[:42].reshape(6, 7), flat[42:].reshape(6, 1)], dim=1)

    mean, var = moments.mean.reshape(6, 8), moments.variance.reshape(6, 8)
    ref_mean, ref_var = as_table(ref.mean), as_table(ref.variance)
    # means: measured z-scores at most 3.6 over the 48 entries
    assert ((mean - ref_mean).abs() < 4.5 * ((var + ref_var) / n).sqrt()).all()
    # variances: per-entry ratios 0.93-1.06, total 0.99 (a |h| for h^2 weighting gives 1.29)
    ratio = var / ref_var
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio
    assert abs(float(var.sum() / ref_var.sum()) - 1.0) < 0.1
    with pytest.raises(ValueError, match="bound"):
        V.encoder_output_gradients(model, x, 2, bound="C")


def test_score_noisier_than_pathwise_in_a_vae():
    torch.manual_seed(1)
    model = build_model(ModelSpec(x_dim=20, z_dim=2, hidden=16, init_std=0.3))
    x = torch.rand(8, 20).round()
    moments = {
        est: V.output_layer_moments(
            model, x, V.encoder_output_gradients(model, x, 300, estimator=est)
        )
        for est in ("score", "pathwise")
    }
    assert moments["score"].total_variance > 3 * moments["pathwise"].total_variance


def test_streaming_gradient_moments_match_stored_samples():
    from aevb.estimators import gradient_samples

    torch.manual_seed(0)
    model = build_model(ModelSpec(x_dim=10, z_dim=2, hidden=6, init_std=0.3))
    x = torch.rand(4, 10).round()
    params = list(model.parameters())

    def surrogate():
        return aevb.elbo(model, x, 1, "B").sum()

    torch.manual_seed(1)
    stored = gradient_samples(surrogate, params, 50).double()
    torch.manual_seed(1)
    streamed = V.gradient_moments(surrogate, params, 50)
    assert torch.allclose(streamed.mean, stored.mean(0), atol=1e-6)
    assert torch.allclose(streamed.variance, stored.var(0), rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="n must be >= 2"):
        V.gradient_moments(surrogate, params, 1)
