"""Appendix F (aevb.full_vb): the weight posterior, the two estimators of L(φ; X), training."""

import math

import pytest
import torch

from aevb.bound import elbo_b
from aevb.full_vb import (
    BayesianLinear,
    FullVBVAE,
    expected_bound,
    fit_full_vb,
    full_vb_bound,
)
from aevb.marginal import importance_log_px


def _model(seed=0, init_log_sigma=-2.0):
    torch.manual_seed(seed)
    model = FullVBVAE(x_dim=16, z_dim=2, hidden=8, init_log_sigma=init_log_sigma)
    with torch.no_grad():  # weights large enough that θ matters
        for p in (model.decoder.hidden.weight_mu, model.decoder.out.weight_mu):
            p.normal_(0.0, 0.5)
    return model


def _data(n=10, seed=1):
    return torch.bernoulli(torch.full((n, 16), 0.4), generator=torch.Generator().manual_seed(seed))


def test_layer_kl_is_the_gaussian_formula():
    layer = BayesianLinear(1, 1)
    with torch.no_grad():
        layer.weight_mu.fill_(0.5)
        layer.weight_log_sigma.fill_(math.log(0.3))
        layer.bias_mu.fill_(0.0)
        layer.bias_log_sigma.fill_(0.0)  # q(b) = prior: KL 0
    expected = math.log(1 / 0.3) + (0.3**2 + 0.5**2) / 2 - 0.5
    layer.requires_grad_(False)
    assert float(layer.kl()) == pytest.approx(expected, rel=1e-5)
    # Wider prior: KL(N(0.5, .3²) || N(0, 2²)) + KL(N(0,1) || N(0, 2²)).
    kl2 = math.log(2 / 0.3) + (0.09 + 0.25) / 8 - 0.5 + math.log(2) + 1 / 8 - 0.5
    assert float(layer.kl(prior_std=2.0)) == pytest.approx(kl2, rel=1e-5)


def test_theta_term_variance_is_the_closed_form():
    """Var_ζ[log p_α(θ̃) − log q_φ(θ̃)] per weight = ½(1 − σ²)² + μ²σ², the noise eq. 24 removes
    (θ̃ = μ + σζ: the term is ½(1 − σ²)ζ² − μσζ + const). Chapter 11 quotes it."""
    layer = BayesianLinear(3, 1)
    mu = torch.tensor([[0.0, 0.8, -1.5]])
    sigma = torch.tensor([[math.exp(-5.0), 0.5, 1.0]])
    with torch.no_grad():
        layer.weight_mu.copy_(mu)
        layer.weight_log_sigma.copy_(sigma.log())
    zeta = torch.randn(200_000, 1, 3, generator=torch.Generator().manual_seed(0))
    theta = mu + sigma * zeta
    with torch.no_grad():
        qw, _ = layer.posteriors()
        term = torch.distributions.Normal(0.0, 1.0).log_prob(theta) - qw.log_prob(theta)
    expected = 0.5 * (1 - sigma.square()).square() + mu.square() * sigma.square()
    assert torch.allclose(term.var(0), expected, rtol=0.02, atol=1e-3)
    assert float(expected[0, 0]) == pytest.approx(0.5, rel=1e-4)  # σ ≪ 1: ½ per weight


@pytest.mark.slow
def test_estimators_a_and_b_agree_in_mean_and_b_has_lower_variance():
    model, x = _model(), _data()
    g = torch.Generator().manual_seed(0)
    n = 500  # N = M: the data term's noise does not swamp the θ term's
    with torch.no_grad():
        a = torch.stack(
            [full_vb_bound(model, x, N=10, estimator="A", generator=g) for _ in range(n)]
        )
        b = torch.stack(
            [full_vb_bound(model, x, N=10, estimator="B", generator=g) for _ in range(n)]
        )
    se = math.sqrt(float(a.var()) / n + float(b.var()) / n)
    assert abs(float(a.mean() - b.mean())) < 4 * se
    assert float(a.var()) > 1.5 * float(b.var())


def test_bound_reduces_to_the_ordinary_bound_when_q_theta_is_a_point():
    model, x = _model(init_log_sigma=-20.0), _data()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        full = full_vb_bound(model, x, N=100, L=400, generator=g) + model.decoder.kl()
        torch.manual_seed(1)
        plain = 100 / x.shape[0] * elbo_b(model.at_mean(), x, L=400).sum()
    assert float(full) == pytest.approx(float(plain), abs=0.02 * abs(float(plain)))


def test_gradients_reach_every_variational_parameter():
    model, x = _model(), _data()
    full_vb_bound(model, x, N=100, generator=torch.Generator().manual_seed(0)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_fixed_theta_view_works_with_the_package():
    model, x = _model(), _data(n=4)
    theta = model.decoder.sample_theta(torch.Generator().manual_seed(0))
    view = model.at(theta)
    assert elbo_b(view, x).shape == (4,)
    assert importance_log_px(view, x, k=8).shape == (4,)
    assert view.sample(3).shape == (3, 16)
    assert model.decoder.n_weights() == 2 * 8 + 8 + 8 * 16 + 16
    sig = model.decoder.sigmas()
    assert torch.allclose(sig["out.weight"], torch.full((16, 8), math.exp(-2.0)))


def test_expected_bound_with_a_point_posterior_is_the_ordinary_bound():
    model, x = _model(init_log_sigma=-20.0), _data(n=50)
    a = expected_bound(model, x, 3, seed=0)
    from aevb.bound import dataset_bound

    b = dataset_bound(model.at_mean(), x, generator=torch.Generator().manual_seed(1))
    assert a == pytest.approx(b, abs=0.5)


@pytest.mark.slow
def test_training_raises_the_bound_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    proto = (torch.rand(2, 16, generator=g) > 0.5).float()
    x = proto[torch.randint(0, 2, (200,), generator=g)] * 0.9 + 0.05
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = FullVBVAE(16, 2, hidden=8)
        hist = fit_full_vb(
            model,
            x,
            4000,
            batch_size=20,
            lr=0.01,
            eval_points=100,
            n_evals=5,
            seed=3,
            show_progress=False,
        )
        runs.append((hist, model))
    hist = runs[0][0]
    assert hist.samples[-1] == 4000 and len(hist.bound) == len(hist.kl_theta)
    assert hist.bound[-1] > hist.bound[0] + 1.0
    assert all(k > 0 for k in hist.kl_theta)
    assert hist.bound == pytest.approx(
        [d - k for d, k in zip(hist.data_term, hist.kl_theta, strict=True)]
    )
    assert runs[0][0].bound == runs[1][0].bound
    with pytest.raises(ValueError, match="estimator"):
        full_vb_bound(runs[0][1], x[:4], N=10, estimator="C")


def test_trained_full_vb_caches_and_recovers_from_a_corrupt_file(tmp_path, monkeypatch):
    from aevb.full_vb import trained_full_vb

    monkeypatch.setenv("AEVB_CACHE", str(tmp_path))
    x = _data(n=40)
    kwargs = dict(z_dim=2, hidden=8, seed=0, verbose=False)
    first, hist = trained_full_vb(x, 200, **kwargs)
    files = list((tmp_path / "models").glob("fullvb-*.pt"))
    assert len(files) == 1 and hist.samples[-1] == 200
    again, hist2 = trained_full_vb(x, 200, **kwargs)
    assert hist2.bound == hist.bound
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    files[0].write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="training again"):
        trained_full_vb(x, 200, **kwargs)
