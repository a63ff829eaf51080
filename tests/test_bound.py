"""The variational bound: Appendix B's KL exactly, estimators A and B, eq. 1 on an exact model."""

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from aevb.bound import dataset_bound, elbo, elbo_a, elbo_b, gaussian_kl, minibatch_bound
from aevb.linear_gaussian import linear_gaussian_model
from aevb.models import ModelSpec, build_model


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, log_var = torch.randn(5, 4), torch.randn(5, 4)
    q = Independent(Normal(mu, (0.5 * log_var).exp()), 1)
    p = Independent(Normal(torch.zeros(4), torch.ones(4)), 1)
    assert torch.allclose(gaussian_kl(mu, log_var), kl_divergence(q, p), atol=1e-5)


def test_gaussian_kl_exact_values():
    # KL(N(2, 1) || N(0, 1)) = 2; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2.
    assert float(gaussian_kl(torch.tensor([2.0]), torch.tensor([0.0]))) == pytest.approx(2.0)
    e = torch.tensor(1.0).exp()
    assert float(gaussian_kl(torch.tensor([0.0]), torch.tensor([1.0]))) == pytest.approx(
        float((e - 2) / 2)
    )


def _trained_ish_model():
    torch.manual_seed(3)
    model = build_model(ModelSpec(x_dim=10, z_dim=3, hidden=8, init_std=0.3))
    x = torch.bernoulli(torch.full((6, 10), 0.3))
    return model, x


def test_estimators_a_and_b_agree_in_expectation():
    model, x = _trained_ish_model()
    torch.manual_seed(4)
    n = 4000
    xs = x.repeat(n, 1)  # n independent single-sample estimates per datapoint, vectorized
    with torch.no_grad():
        a = elbo_a(model, xs, L=1).reshape(n, -1)
        b = elbo_b(model, xs, L=1).reshape(n, -1)
    diff = a.mean(0) - b.mean(0)
    stderr = (a.var(0) / n + b.var(0) / n).sqrt()
    assert (diff.abs() < 4 * stderr).all(), (diff, stderr)
    # B, with the KL analytic, has lower variance than A here (Section 2.3's motivation).
    assert (b.var(0) <= a.var(0)).all()


def test_bound_identity_on_exact_model():
    """Eq. 1: log p(x) − L = KL(q(z|x) || p(z|x)), with log p(x) and the KL exact."""
    model = linear_gaussian_model(x_dim=5, z_dim=2, sigma=0.7, seed=0)
    x = model.sample(3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.fit_encoder_to_posterior(x)
        model.encoder.c.add_(0.3)  # an imperfect q, so the gap is not zero
        model.encoder.log_var.add_(0.4)
    torch.manual_seed(5)
    n = 100_000
    with torch.no_grad():
        draws = elbo_b(model, x.repeat(n, 1), L=1).reshape(n, -1)
        q = model.encoder(x)
        q_full = MultivariateNormal(q.mean, covariance_matrix=torch.diag_embed(q.variance))
        kl = kl_divergence(q_full, model.posterior(x))
        gap = model.log_marginal(x) - draws.mean(0)
    stderr = draws.std(0) / n**0.5
    assert (kl > 0.1).all()
    assert ((gap - kl).abs() < 4 * stderr).all(), (gap, kl, stderr)


def test_encoder_equal_to_posterior_makes_bound_tight_when_posterior_is_diagonal():
    model = linear_gaussian_model(x_dim=4, z_dim=1, sigma=0.5, seed=2)  # 1-D latent: diag exact
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    model.fit_encoder_to_posterior(x)
    with torch.no_grad():
        a = elbo_a(model, x, L=10)
    assert torch.allclose(a, model.log_marginal(x), atol=1e-4)


def test_minibatch_bound_scales_by_N_over_M():
    model, x = _trained_ish_model()
    torch.manual_seed(0)
    per_point = elbo(model, x, 1, "B")
    torch.manual_seed(0)
    total = minibatch_bound(model, x, N=60, L=1, estimator="B")
    assert total.item() == pytest.approx(per_point.sum().item() * 60 / 6, rel=1e-5)


def test_dataset_bound_is_deterministic_with_generator():
    model, x = _trained_ish_model()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert dataset_bound(model, x, generator=g1) == dataset_bound(model, x, generator=g2)


def test_unknown_estimator_and_bad_L_are_refused():
    model, x = _trained_ish_model()
    with pytest.raises(ValueError, match="'A' \\(eq. 6\\) or 'B'"):
        elbo(model, x, 1, "C")
    with pytest.raises(ValueError, match="L must be an integer >= 1"):
        elbo_a(model, x, L=0)
