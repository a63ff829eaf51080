"""Importance-sampled log p(x): approaches the exact value as k grows, sits above the bound."""

import math

import pytest
import torch

from aevb.bound import elbo_a
from aevb.linear_gaussian import linear_gaussian_model
from aevb.marginal import importance_log_px


@pytest.fixture()
def model_and_x():
    model = linear_gaussian_model(x_dim=6, z_dim=3, sigma=0.5, seed=0)
    x = model.sample(8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # a deliberately imperfect q: the exact mean, too-wide variances
        model.fit_encoder_to_posterior(x)
        model.encoder.log_var.add_(1.0)
    return model, x


def test_importance_estimate_approaches_exact_log_px(model_and_x):
    model, x = model_and_x
    exact = model.log_marginal(x).detach()
    torch.manual_seed(0)
    errors = []
    for k in (1, 10, 100, 2000):
        reps = torch.stack([importance_log_px(model, x, k=k) for _ in range(20)])
        errors.append(float((exact - reps.mean(0)).mean()))
    assert all(e >= -0.05 for e in errors), errors  # below log p(x) on average (Jensen)
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[-1] < 0.05


def test_importance_estimate_sits_above_the_elbo_on_average(model_and_x):
    model, x = model_and_x
    torch.manual_seed(1)
    with torch.no_grad():
        elbos = elbo_a(model, x, L=2000)
    iw = torch.stack([importance_log_px(model, x, k=50) for _ in range(40)]).mean(0)
    assert (iw > elbos).all()


def test_chunking_is_exact():
    model = linear_gaussian_model(x_dim=3, z_dim=2, seed=1)
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    a = importance_log_px(model, x, k=64, chunk=64, batch_size=5)
    torch.manual_seed(3)
    b = importance_log_px(model, x, k=64, chunk=16, batch_size=5)
    assert torch.allclose(a, b, atol=1e-5)
    assert math.isfinite(float(a.sum()))
