"""HMC draws from the right distribution and tunes its step size to the target acceptance."""

import torch
from torch.distributions import MultivariateNormal

from aevb.hmc import hmc, posterior_log_prob
from aevb.linear_gaussian import linear_gaussian_model


def test_hmc_samples_a_correlated_gaussian():
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    target = MultivariateNormal(torch.tensor([1.0, -2.0]), covariance_matrix=cov)
    g = torch.Generator().manual_seed(0)
    res = hmc(
        target.log_prob,
        torch.zeros(64, 2),
        100,
        n_leapfrog=10,
        step_size=0.3,
        warmup=50,
        generator=g,
    )
    s = res.samples.reshape(-1, 2)
    assert torch.allclose(s.mean(0), target.mean, atol=0.1)
    assert torch.allclose(torch.cov(s.T), cov, atol=0.12)
    assert 0.8 < float(res.acceptance.mean()) < 0.98


def test_hmc_on_an_exact_posterior():
    model = linear_gaussian_model(x_dim=5, z_dim=2, sigma=0.5, seed=3)
    x = model.sample(4, generator=torch.Generator().manual_seed(1))
    chains = 50  # 50 independent chains per datapoint
    res = hmc(
        posterior_log_prob(model, x.repeat(chains, 1)),
        torch.zeros(4 * chains, 2),
        100,
        warmup=50,
        generator=torch.Generator().manual_seed(2),
    )
    draws = res.samples.reshape(-1, chains, 4, 2).reshape(-1, 4, 2)
    post = model.posterior(x)
    assert torch.allclose(draws.mean(0), post.mean.detach(), atol=0.05)
    assert torch.allclose(
        draws.var(0), torch.diagonal(post.covariance_matrix, dim1=-2, dim2=-1).detach(), rtol=0.15
    )
