"""Per-datapoint posterior inference (aevb.posterior), checked on models with exact answers."""

import math

import pytest
import torch

from aevb.linear_gaussian import linear_gaussian_model
from aevb.models import ModelSpec, build_model
from aevb.posterior import (
    amortized_posterior,
    decoder_log_lik,
    gaussian_bound,
    grid_posterior,
    hmc_posterior,
    importance_log_evidence,
    local_grid_posterior,
    moment_agreement,
    optimize_gaussian_posterior,
)


def _linear(z_dim=2, n=6, seed=3):
    model = linear_gaussian_model(x_dim=5, z_dim=z_dim, sigma=0.5, seed=seed)
    x = model.sample(n, generator=torch.Generator().manual_seed(1))
    return model, x


def _mean_field_optimum(model, x):
    """The mean-field Gaussian closest in KL(q||p) to the exact posterior: (mean, log var)."""
    post = model.posterior(x)
    precision = torch.linalg.inv(post.covariance_matrix[0])
    log_var = (1.0 / torch.diagonal(precision)).log().expand_as(post.mean)
    return post.mean.detach(), log_var.detach()


def test_gaussian_bound_is_below_log_px_and_tight_at_the_optimum():
    model, x = _linear()
    mu, log_var = _mean_field_optimum(model, x)
    lik = decoder_log_lik(model, x)
    with torch.no_grad():
        b = gaussian_bound(lik, mu, log_var, L=4000, generator=torch.Generator().manual_seed(0))
        exact = model.log_marginal(x)
        # The gap of the best mean-field q is KL(q||p) = ½(Σ log P_jj − log det P), exactly.
        P = torch.linalg.inv(model.posterior(x).covariance_matrix[0])
        gap = 0.5 * (torch.diagonal(P).log().sum() - torch.logdet(P))
    assert torch.all(b <= exact + 0.05)
    assert torch.allclose(b, exact - gap, atol=0.1)


def test_optimized_q_reaches_the_mean_field_optimum():
    model, x = _linear()
    mu_star, log_var_star = _mean_field_optimum(model, x)
    lik = decoder_log_lik(model, x)
    zeros = torch.zeros_like(mu_star)
    fit = optimize_gaussian_posterior(lik, zeros, zeros, steps=600, lr=0.05, L=8, seed=0)
    assert torch.allclose(fit.mu, mu_star, atol=0.08)
    assert torch.allclose(fit.log_var, log_var_star, atol=0.15)
    # The trace is log-spaced, starts at 0, ends at the last step, and the bound rose.
    assert fit.trace_steps[0] == 0 and fit.trace_steps[-1] == 600
    assert all(b == sorted(fit.trace_steps)[i] for i, b in enumerate(fit.trace_steps))
    assert float(fit.trace_bound[-1].mean()) > float(fit.trace_bound[0].mean()) + 1.0
    assert fit.seconds > 0 and fit.trace_seconds[-1] == pytest.approx(fit.seconds)
    # Traced parameters follow the run: the last entry is the result.
    assert torch.equal(fit.trace_mu[-1], fit.mu)


def test_optimization_is_deterministic_under_a_seed():
    model, x = _linear(n=3)
    lik = decoder_log_lik(model, x)
    zeros = torch.zeros(3, 2)
    a = optimize_gaussian_posterior(lik, zeros, zeros, steps=20, seed=5)
    b = optimize_gaussian_posterior(lik, zeros, zeros, steps=20, seed=5)
    assert torch.equal(a.mu, b.mu) and torch.equal(a.log_var, b.log_var)


def test_optimize_rejects_bad_shapes():
    with pytest.raises(ValueError, match="must both be"):
        optimize_gaussian_posterior(lambda z: z.sum(-1), torch.zeros(3), torch.zeros(3), 5)


def test_importance_estimate_is_exact_for_the_exact_posterior_in_one_dimension():
    # With z_dim = 1 the mean-field q is the exact posterior: every weight equals p(x).
    model, x = _linear(z_dim=1)
    mu, log_var = _mean_field_optimum(model, x)
    est = importance_log_evidence(
        decoder_log_lik(model, x), mu, log_var, k=10, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(est, model.log_marginal(x).detach(), atol=1e-3)


def test_importance_estimate_converges_from_a_poor_proposal():
    model, x = _linear()
    mu = torch.zeros(x.shape[0], 2)
    est = importance_log_evidence(
        decoder_log_lik(model, x),
        mu,
        torch.zeros_like(mu),
        k=20000,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(est, model.log_marginal(x).detach(), atol=0.05)


def test_grid_posterior_is_reexported_and_matches_the_exact_posterior():
    from aevb import intractable

    assert grid_posterior is intractable.grid_posterior
    model, x = _linear(n=3)
    grid = grid_posterior(model, x, points=161, limit=6.0)
    assert torch.allclose(grid.log_marginal.float(), model.log_marginal(x).detach(), atol=1e-3)
    assert torch.allclose(grid.mean().float(), model.posterior(x).mean.detach(), atol=1e-3)


def test_local_grid_resolves_a_narrow_posterior():
    # sigma = 0.05: the posterior sd is ~0.03, far below a [-4, 4] grid's spacing.
    model = linear_gaussian_model(x_dim=5, z_dim=2, sigma=0.05, seed=3)
    x = model.sample(3, generator=torch.Generator().manual_seed(1))
    post = model.posterior(x)
    sd = torch.diagonal(post.covariance_matrix, dim1=-2, dim2=-1).sqrt().detach()
    grids = local_grid_posterior(model, x, post.mean.detach() + 0.5 * sd, 8 * sd, points=81)
    exact = model.log_marginal(x).detach()
    for i, g in enumerate(grids):
        assert abs(float(g.log_marginal[0]) - float(exact[i])) < 1e-3
        assert torch.allclose(g.mean()[0].float(), post.mean[i].detach(), atol=1e-3)
        q = torch.distributions.Independent(
            torch.distributions.Normal(post.mean[i : i + 1].detach(), sd[i : i + 1]), 1
        )
        # KL(q || p) on the grid equals the closed form for Gaussians.
        P = torch.distributions.MultivariateNormal(
            post.mean[i].detach(), post.covariance_matrix[i].detach()
        )
        Q = torch.distributions.MultivariateNormal(post.mean[i].detach(), torch.diag(sd[i] ** 2))
        closed = torch.distributions.kl_divergence(Q, P)
        assert abs(float(g.kl_from(q)[0]) - float(closed)) < 1e-3


@pytest.mark.slow
def test_hmc_posterior_and_moment_agreement():
    model, x = _linear(n=4)
    res = hmc_posterior(model, x, 300, warmup=40, z0=torch.zeros(4, 2), n_leapfrog=3, seed=2)
    assert res.samples.shape == (300, 4, 2) and res.seconds > 0
    post = model.posterior(x)
    assert torch.allclose(res.mean(), post.mean.detach(), atol=0.12)
    exact_sd = torch.diagonal(post.covariance_matrix, dim1=-2, dim2=-1).sqrt().detach()
    # (A short run: compare the standard deviations pooled over the four chains, whose exact
    # posteriors share one covariance in this model.)
    assert torch.allclose(res.std().mean(0), exact_sd[0], rtol=0.15)
    # The mean-field optimum has the right mean but too small variances (zero-forcing).
    mu, log_var = _mean_field_optimum(model, x)
    agree = moment_agreement(mu, log_var, res.samples)
    assert float(agree["mean_error"].max()) < 0.3
    torch.manual_seed(0)
    exact = moment_agreement(mu, log_var, post.sample((20000,)).detach())
    assert float(exact["mean_error"].max()) < 0.03
    assert float(exact["log_std_ratio"].max()) < -0.01


@pytest.mark.slow
def test_preconditioned_hmc_targets_the_same_posterior():
    # An encoder far from the posterior (wrong location, scales 0.5 and 2) only changes the
    # coordinates the chain moves in, not its target.
    model, x = _linear(n=4)
    with torch.no_grad():
        model.encoder.c.fill_(0.7)
        model.encoder.log_var.copy_(torch.tensor([math.log(0.25), math.log(4.0)]))
    res = hmc_posterior(model, x, 300, warmup=40, precondition=True, n_leapfrog=3, seed=4)
    post = model.posterior(x)
    assert torch.allclose(res.mean(), post.mean.detach(), atol=0.12)
    exact_sd = torch.diagonal(post.covariance_matrix, dim1=-2, dim2=-1).sqrt().detach()
    assert torch.allclose(res.std().mean(0), exact_sd[0], rtol=0.15)


def test_moment_agreement_is_zero_for_matching_moments():
    s = torch.randn(4000, 3, 2, generator=torch.Generator().manual_seed(0)) * 2.0 + 1.0
    out = moment_agreement(s.mean(0), (s.std(0) ** 2).log(), s)
    assert torch.allclose(out["mean_error"], torch.zeros(3), atol=1e-5)
    assert torch.allclose(out["log_std_ratio"], torch.zeros(3), atol=1e-5)
    shifted = moment_agreement(s.mean(0) + s.std(0), (s.std(0) ** 2).log(), s)
    assert torch.allclose(shifted["mean_error"], torch.ones(3), atol=1e-5)


def test_amortized_posterior_uses_the_encoder():
    torch.manual_seed(0)
    model = build_model(ModelSpec(x_dim=16, z_dim=3, hidden=8))
    x = torch.rand(5, 16)
    q = amortized_posterior(model, x)
    mu, log_var = model.encoder.params(x)
    assert torch.equal(q.mu, mu) and torch.equal(q.log_var, log_var)
    assert q.sample(7, torch.Generator().manual_seed(0)).shape == (7, 5, 3)
    assert math.isfinite(q.seconds)
    assert q.distribution().batch_shape == (5,)
