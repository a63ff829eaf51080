"""The paper's Appendix C models: shapes, distributions, exact log-densities, bad input."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from aevb.models import (
    BernoulliMLPDecoder,
    GaussianMLPDecoder,
    GaussianMLPEncoder,
    ModelSpec,
    build_model,
)


@pytest.fixture(autouse=True)
def _no_grad():
    """These tests compare values, not gradients: reading a tensor as a float is then clean."""
    with torch.no_grad():
        yield


def test_encoder_returns_diagonal_gaussian_per_datapoint():
    enc = GaussianMLPEncoder(6, 3, hidden=5)
    q = enc(torch.rand(4, 6))
    assert isinstance(q, Independent) and isinstance(q.base_dist, Normal)
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    mu, log_var = enc.params(torch.rand(4, 6))
    assert mu.shape == log_var.shape == (4, 3)


def test_bernoulli_decoder_log_prob_matches_hand_computation():
    torch.manual_seed(0)
    dec = BernoulliMLPDecoder(2, 3, hidden=4)
    z = torch.tensor([[0.3, -1.2]])
    x = torch.tensor([[1.0, 0.0, 1.0]])
    y = torch.sigmoid(dec.out(torch.tanh(dec.hidden(z))))
    by_hand = sum(
        math.log(float(y[0, d])) if x[0, d] == 1 else math.log(1 - float(y[0, d])) for d in range(3)
    )
    assert dec(z).log_prob(x).item() == pytest.approx(by_hand, rel=1e-5)
    assert torch.allclose(dec.mean(z), y)


def test_bernoulli_decoder_grey_levels_give_cross_entropy():
    dec = BernoulliMLPDecoder(2, 2, hidden=3)
    z, x = torch.zeros(1, 2), torch.tensor([[0.25, 0.5]])
    y = dec.mean(z)[0]
    by_hand = sum(float(x[0, d] * y[d].log() + (1 - x[0, d]) * (1 - y[d]).log()) for d in range(2))
    assert dec(z).log_prob(x).item() == pytest.approx(by_hand, rel=1e-5)


def test_gaussian_decoder_log_prob_matches_hand_computation():
    torch.manual_seed(1)
    dec = GaussianMLPDecoder(2, 2, hidden=3, mean_activation="identity")
    z, x = torch.tensor([[0.5, 0.1]]), torch.tensor([[0.2, 0.9]])
    mu, log_var = dec.params(z)
    by_hand = sum(
        -0.5 * math.log(2 * math.pi)
        - 0.5 * float(log_var[0, d])
        - 0.5 * float((x[0, d] - mu[0, d]) ** 2 / log_var[0, d].exp())
        for d in range(2)
    )
    assert float(dec(z).log_prob(x)) == pytest.approx(by_hand, rel=1e-5)


def test_gaussian_decoder_sigmoid_means_lie_in_unit_interval_and_floor_applies():
    dec = GaussianMLPDecoder(2, 5, hidden=3, min_log_var=-3.0)
    with torch.no_grad():
        dec.out.bias.fill_(-50.0)
    mu, log_var = dec.params(torch.randn(7, 2))
    assert ((mu >= 0) & (mu <= 1)).all()
    assert (log_var >= -3.0).all()


def test_decoders_accept_leading_sample_dimensions():
    dec = BernoulliMLPDecoder(3, 4, hidden=5)
    p = dec(torch.randn(7, 2, 3))
    assert p.batch_shape == (7, 2) and p.event_shape == (4,)
    assert isinstance(p.base_dist, Bernoulli)


def test_paper_initialisation_is_small():
    model = build_model(ModelSpec(x_dim=784, z_dim=5, hidden=50))
    w = model.encoder.hidden.weight
    assert abs(float(w.std()) - 0.01) < 0.001
    assert abs(float(w.mean())) < 0.001


def test_prior_is_standard_normal_with_model_shape():
    model = build_model({"x_dim": 4, "z_dim": 3, "hidden": 2})
    prior = model.prior()
    assert prior.event_shape == (3,)
    assert float(prior.log_prob(torch.zeros(3))) == pytest.approx(-1.5 * math.log(2 * math.pi))


def test_sample_and_reconstruct_shapes():
    model = build_model(ModelSpec(x_dim=6, z_dim=2, hidden=4))
    assert model.sample(5).shape == (5, 6)
    assert model.reconstruct(torch.rand(3, 6)).shape == (3, 6)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_z_dim_below_one_is_refused(bad):
    with pytest.raises(ValueError, match="z_dim must be an integer >= 1"):
        build_model(ModelSpec(x_dim=4, z_dim=bad))


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="bernoulli, gaussian"):
        build_model(ModelSpec(x_dim=4, z_dim=2, decoder="poisson"))


def test_check_input_errors_name_the_fix():
    model = build_model(ModelSpec(x_dim=4, z_dim=2, hidden=3))
    with pytest.raises(ValueError, match="expected \\(batch, 4\\)"):
        model.check_input(torch.rand(3, 2, 2))
    with pytest.raises(TypeError, match="/ 255"):
        model.check_input(torch.zeros(3, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="non-finite"):
        model.check_input(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="divide by 255"):
        model.check_input(torch.full((2, 4), 255.0))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.check_input([[0.0] * 4])
