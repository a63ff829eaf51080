"""Exact answers where they exist: grid integration and the linear-Gaussian closed forms."""

import math

import pytest
import torch

import aevb
from aevb import intractable as I
from aevb.linear_gaussian import linear_gaussian_model
from aevb.models import ModelSpec, build_model


def _lg(z_dim=2):
    model = linear_gaussian_model(5, z_dim, 0.5, seed=0)
    x = model.sample(4, generator=torch.Generator().manual_seed(1))
    return model, x


def test_grid_geometry():
    assert I.grid_size(3, 10) == 1000
    z, log_dv = I.latent_grid(2, 4, limit=2.0)
    assert z.shape == (16, 2)
    assert log_dv == pytest.approx(2 * math.log(1.0))
    assert torch.allclose(z[:4, 1], torch.tensor([-1.5, -0.5, 0.5, 1.5]))  # last axis fastest
    part, _ = I.latent_grid(2, 4, 2.0, start=5, stop=7)
    assert torch.equal(part, z[5:7])
    with pytest.raises(ValueError, match="points"):
        I.grid_size(2, 0)


def test_grid_marginal_and_posterior_match_the_linear_gaussian_model():
    model, x = _lg()
    with torch.no_grad():
        exact = model.log_marginal(x).double()
        post = model.posterior(x)
    streamed = I.grid_log_marginal(model, x, points=96, limit=6.0, chunk=1000)
    assert torch.allclose(streamed, exact, atol=1e-4)
    gp = I.grid_posterior(model, x, points=96, limit=6.0)
    assert torch.allclose(gp.log_marginal, exact, atol=1e-4)
    assert torch.allclose(gp.weights.sum(0), torch.ones(4, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(gp.mean(), post.mean.double(), atol=1e-4)
    assert torch.allclose(gp.covariance(), post.covariance_matrix.double(), atol=1e-4)


def test_eq1_closed_form_and_grid():
    """log p(x) = KL(q || p(z|x)) + L (eq. 1), at two encoders."""
    model, x = _lg()
    for fit in (False, True):
        with torch.no_grad():
            if fit:
                model.fit_encoder_to_posterior(x)
            log_px = model.log_marginal(x)
            bound = I.linear_gaussian_bound(model, x)
            kl = I.kl_to_posterior(model, x)
            assert (kl >= 0).all() and (bound <= log_px).all()
            assert torch.allclose(log_px, bound + kl, atol=1e-4)
            gp = I.grid_posterior(model, x, points=128, limit=6.0)
            assert torch.allclose(gp.kl_from(model.encoder(x)), kl.double(), atol=1e-3)
    assert float(kl.max()) < 0.1  # mean-field fit: small but non-zero gap


def test_closed_form_bound_equals_monte_carlo_estimators():
    model, x = _lg()
    torch.manual_seed(0)
    with torch.no_grad():
        exact = I.linear_gaussian_bound(model, x).double()
        for est in ("A", "B"):
            draws = aevb.elbo(model, x.repeat(2000, 1), 1, est).reshape(2000, -1).double()
            se = draws.std(0) / 2000**0.5
            assert ((draws.mean(0) - exact).abs() < 4 * se).all(), est


def test_grid_expectation_matches_closed_form_expected_log_likelihood():
    model, x = _lg()
    with torch.no_grad():
        gp = I.grid_posterior(model, x, points=128, limit=6.0)
        q = model.encoder(x)
        zq = gp.z[:, None, :].expand(-1, x.shape[0], -1)
        ell = gp.expectation_under(q, model.decoder(zq).log_prob(x))
        closed = I.linear_gaussian_expected_log_likelihood(model, x)
    assert torch.allclose(ell, closed.double(), atol=1e-3)


def test_grid_on_an_mlp_decoder_and_its_cost():
    torch.manual_seed(0)
    model = build_model(ModelSpec(x_dim=10, z_dim=1, hidden=8, init_std=1.0))
    x = torch.rand(3, 10).round()
    coarse = I.grid_log_marginal(model, x, points=200, limit=6.0)
    fine = I.grid_log_marginal(model, x, points=2000, limit=6.0)
    assert torch.allclose(coarse, fine, atol=1e-3)
    # importance sampling with the prior as proposal agrees (an independent estimate)
    z = torch.randn(200_000, 1)
    with torch.no_grad():
        lw = model.decoder(z[:, None, :].expand(-1, 3, -1)).log_prob(x)
    mc = torch.logsumexp(lw.double(), 0) - math.log(200_000)
    assert torch.allclose(mc, fine, atol=0.02)
    assert I.time_grid_marginal(model, x, points=50) > 0


def test_mcem_gradient_count():
    assert I.mcem_gradient_evaluations(100, 10, n_leapfrog=10, warmup=5) == 100 * 15 * 11


def test_moment_matched_kl_is_zero_for_a_gaussian_posterior():
    """A linear-Gaussian posterior is Gaussian: the KL to its moment-matched Gaussian is ≈ 0."""
    model, x = _lg()
    gp = I.grid_posterior(model, x, points=128, limit=6.0)
    kl = gp.moment_matched_kl()
    assert kl.shape == (4,)
    assert (kl.abs() < 1e-5).all()


def test_moment_matched_kl_of_a_uniform_density_has_its_closed_form():
    """Uniform on [−a, a]²: KL(U || N(0, a²/3 I)) = 2 · ½ (log(π/6) + 1) = log(π/6) + 1."""
    a, points = 2.0, 400
    z, log_dv = I.latent_grid(2, points, limit=a)
    log_density = torch.full((len(z), 1), -math.log((2 * a) ** 2), dtype=torch.float64)
    gp = I.GridPosterior(z, log_density, torch.zeros(1, dtype=torch.float64), log_dv)
    assert float(gp.moment_matched_kl()[0]) == pytest.approx(math.log(math.pi / 6) + 1, abs=1e-4)


def test_moment_matched_kl_is_positive_for_an_mlp_posterior():
    torch.manual_seed(0)
    model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=32, init_std=1.0))
    with torch.no_grad():
        x = model.decoder(torch.randn(3, 2)).sample()
    kl = I.grid_posterior(model, x, points=100, limit=5.0).moment_matched_kl()
    assert (kl > 0).all()
