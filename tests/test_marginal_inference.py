"""Marginal inference with a VAE prior (aevb.marginal_inference): corruptions, baselines,
likelihoods, samplers, and the missing-pixel log-likelihood against exact answers."""

import math

import pytest
import torch

from aevb.marginal_inference import (
    bernoulli_log_likelihood,
    bilinear_upsample,
    block_mask,
    downsample,
    fill_mean,
    fill_median,
    gaussian_noise,
    inpaint_log_lik,
    knn_probabilities,
    mean_filter,
    median_filter,
    metropolis_within_gibbs,
    missing_log_likelihood,
    missing_log_likelihood_from_samples,
    nearest_training_image,
    noise_log_lik,
    pseudo_gibbs,
    psnr,
    random_mask,
    restore,
    salt_and_pepper,
    superres_log_lik,
)
from aevb.models import ModelSpec, build_model
from aevb.posterior import GaussianPosterior

SHAPE = (4, 4)


def _tiny_model(z_dim=1, seed=0, scale=1.0):
    torch.manual_seed(seed)
    model = build_model(ModelSpec(x_dim=16, z_dim=z_dim, hidden=8))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model.eval()


def _z_independent_model():
    """A decoder whose output ignores z: p(x|z) = Π_d Bernoulli(sigmoid(b_d))."""
    model = _tiny_model(z_dim=2)
    with torch.no_grad():
        model.decoder.out.weight.zero_()
    return model


def _exact_1d(model, x, missing, points=4001, limit=8.0):
    """Quadrature over a 1-D latent: P(x_d = 1 | x_obs) and log p(x_miss | x_obs)."""
    z = torch.linspace(-limit, limit, points)[:, None, None].expand(-1, x.shape[0], 1)
    with torch.no_grad():
        logits = model.decoder.logits(z)
        ll = x * torch.nn.functional.logsigmoid(logits) + (1 - x) * torch.nn.functional.logsigmoid(
            -logits
        )
        log_prior = model.prior().log_prob(z)
        log_obs = (ll * (~missing)).sum(-1) + log_prior
        post = torch.softmax(log_obs, dim=0)  # (points, n)
        probs = (post[..., None] * torch.sigmoid(logits)).sum(0)
        log_miss = torch.logsumexp(torch.log(post) + (ll * missing).sum(-1), 0)
    return probs, log_miss


def test_psnr_known_values():
    truth = torch.zeros(2, 16)
    est = truth + 0.1
    assert torch.allclose(psnr(est, truth), torch.full((2,), 20.0), atol=1e-4)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :4] = True
    est2 = truth.clone()
    est2[:, :4] = 0.01
    assert torch.allclose(psnr(est2, truth, mask), torch.full((2,), 40.0), atol=1e-3)
    assert math.isinf(float(psnr(truth, truth)[0]))


def test_bernoulli_log_likelihood_and_mask():
    p = torch.full((1, 4), 0.25)
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    expected = 2 * math.log(0.25) + 2 * math.log(0.75)
    assert float(bernoulli_log_likelihood(p, x)) == pytest.approx(expected, abs=1e-5)
    mask = torch.tensor([[True, False, False, False]])
    assert float(bernoulli_log_likelihood(p, x, mask)) == pytest.approx(math.log(0.25), abs=1e-5)
    # Sure and wrong: finite, large.
    assert math.isfinite(float(bernoulli_log_likelihood(torch.zeros(1, 4), x)))


def test_corruptions_have_the_stated_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.full((200, 100), 0.5)
    y = gaussian_noise(x, 0.3, g)
    assert abs(float((y - x).std()) - 0.3) < 0.01
    sp = salt_and_pepper(x, 0.2, g)
    hit = sp != 0.5
    assert abs(float(hit.float().mean()) - 0.2) < 0.01
    assert set(sp[hit].unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="probability"):
        salt_and_pepper(x, 1.5)
    m = random_mask(200, 100, 0.7, g)
    assert m.dtype == torch.bool and abs(float(m.float().mean()) - 0.7) < 0.01
    b = block_mask(3, (28, 28), 7, 7, 14, 14)
    assert b.shape == (3, 784) and int(b[0].sum()) == 196
    with pytest.raises(ValueError, match="outside"):
        block_mask(1, (4, 4), 10, 10, 2, 2)


def test_downsample_and_bilinear_upsample():
    x = torch.arange(16.0).reshape(1, 16) / 16
    low = downsample(x, SHAPE, 2)
    assert low.shape == (1, 4)
    assert float(low[0, 0]) == pytest.approx((0 + 1 + 4 + 5) / 4 / 16)
    const = torch.full((2, 4), 0.3)
    up = bilinear_upsample(const, (2, 2), 2)
    assert up.shape == (2, 16) and torch.allclose(up, torch.full((2, 16), 0.3))
    with pytest.raises(ValueError, match="divisible"):
        downsample(x, SHAPE, 3)


def test_filters_and_fills():
    const = torch.full((2, 16), 0.4)
    assert torch.allclose(mean_filter(const, SHAPE), const)
    salt = const.clone()
    salt[:, 5] = 1.0
    assert torch.allclose(median_filter(salt, SHAPE), const)
    missing = block_mask(2, SHAPE, 1, 1, 2, 2)
    holed = torch.where(missing, torch.zeros_like(const), const)
    assert torch.allclose(fill_mean(holed, missing, SHAPE), const, atol=1e-6)
    assert torch.allclose(fill_median(holed, missing, SHAPE), const)
    # Observed pixels are never changed.
    x = torch.rand(2, 16, generator=torch.Generator().manual_seed(0))
    for fill in (fill_mean, fill_median):
        out = fill(x, missing, SHAPE)
        assert torch.equal(out[~missing], x[~missing])


def test_nearest_training_image_and_knn():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 16, generator=g)
    assert torch.equal(nearest_training_image(train[7:9], train), train[7:9])
    low = downsample(train[3:4], SHAPE, 2)
    found = nearest_training_image(low, train, transform=lambda t: downsample(t, SHAPE, 2))
    assert torch.equal(found, train[3:4])
    observed = torch.zeros(1, 16)
    observed[0, :8] = 1
    query = train[11:12].clone()
    query[0, 8:] = 0.0  # the unobserved half is wrong, but ignored
    assert torch.equal(nearest_training_image(query, train, observed=observed), train[11:12])
    binary = (train > 0.5).float()
    p = knn_probabilities(binary[:2], torch.ones(2, 16), binary, k=4)
    assert bool(((p > 0) & (p < 1)).all())
    assert torch.allclose(p * 6 - 1, (p * 6 - 1).round(), atol=1e-5)  # (count + 1)/(k + 2)


def test_noise_likelihoods():
    model = _tiny_model(z_dim=2)
    y = torch.rand(3, 16, generator=torch.Generator().manual_seed(1))
    z = torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(2))
    mu = model.decoder.mean(z)
    lik = noise_log_lik(model, y, "gaussian", 0.3, model_sigma=0.1)(z)
    ref = torch.distributions.Normal(mu, math.sqrt(0.1)).log_prob(y).sum(-1)
    assert lik.shape == (5, 3) and torch.allclose(lik, ref, atol=1e-4)
    sp0 = noise_log_lik(model, y, "salt-and-pepper", 0.0, model_sigma=0.1)(z)
    ref0 = torch.distributions.Normal(mu, 0.1).log_prob(y).sum(-1)
    assert torch.allclose(sp0, ref0, atol=1e-4)
    # A robust likelihood: an outlier pixel costs at most -log(level) per pixel.
    y_out = y.clone()
    y_out[:, 0] = 1.0 - mu[0, :, 0].detach().round()
    sp = noise_log_lik(model, y_out, "salt-and-pepper", 0.2, model_sigma=0.05)(z)
    assert bool(torch.isfinite(sp).all())
    with pytest.raises(ValueError, match="kind"):
        noise_log_lik(model, y, "speckle", 0.1)
    low = downsample(y, SHAPE, 2)
    assert superres_log_lik(model, low, SHAPE, 2)(z).shape == (5, 3)


def test_missing_log_likelihood_exact_when_z_is_irrelevant():
    model = _z_independent_model()
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((3, 16), 0.5), generator=g)
    missing = random_mask(3, 16, 0.5, g)
    q = GaussianPosterior(torch.randn(3, 2, generator=g), torch.zeros(3, 2))
    est = missing_log_likelihood(model, x, missing, q, k=20)
    exact = bernoulli_log_likelihood(
        torch.sigmoid(model.decoder.out.bias).expand(3, -1), x, missing
    )
    assert torch.allclose(est, exact.detach(), atol=1e-4)
    z = torch.randn(7, 3, 2, generator=g)
    from_samples = missing_log_likelihood_from_samples(model, x, missing, z)
    assert torch.allclose(from_samples, exact.detach(), atol=1e-4)


def test_missing_log_likelihood_matches_quadrature():
    model = _tiny_model(z_dim=1, seed=3, scale=1.5)
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((4, 16), 0.5), generator=g)
    missing = random_mask(4, 16, 0.5, g)
    _, exact = _exact_1d(model, x, missing)
    q = GaussianPosterior(torch.zeros(4, 1), torch.zeros(4, 1))  # the prior as proposal
    est = missing_log_likelihood(model, x, missing, q, k=20000, seed=0)
    assert torch.allclose(est, exact, atol=0.05)


def test_metropolis_within_gibbs_samples_the_conditional():
    model = _tiny_model(z_dim=1, seed=3, scale=1.5)
    with torch.no_grad():  # an encoder that proposes from the prior: q(z|x) = N(0, 1)
        model.encoder.out.weight.zero_()
        model.encoder.out.bias.zero_()
    g = torch.Generator().manual_seed(1)
    x1 = torch.bernoulli(torch.full((1, 16), 0.5), generator=g)
    x = x1.expand(64, -1).clone()  # 64 independent chains on one image
    missing = block_mask(64, SHAPE, 0, 0, 2, 4)
    probs, _ = _exact_1d(model, x[:1], missing[:1])
    res = metropolis_within_gibbs(model, x, missing, 400, burn_in=100, seed=0)
    est = res.probs.mean(0)
    assert torch.allclose(est[missing[0]], probs[0][missing[0]], atol=0.04)
    assert bool(((res.acceptance > 0) & (res.acceptance <= 1)).all())
    assert res.z.shape == (300, 64, 1)


def test_samplers_keep_observed_pixels_and_ignore_irrelevant_latents():
    model = _z_independent_model()
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((5, 16), 0.5), generator=g)
    missing = block_mask(5, SHAPE, 2, 0, 2, 4)
    expected = torch.sigmoid(model.decoder.out.bias).detach()
    for sampler in (pseudo_gibbs, metropolis_within_gibbs):
        res = sampler(model, x, missing, 10, seed=0)
        assert torch.allclose(res.probs, expected.expand(5, -1), atol=1e-5)


def test_restore_raises_the_bound_and_returns_images():
    model = _tiny_model(z_dim=2, seed=1)
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((6, 16), 0.5), generator=g)
    missing = block_mask(6, SHAPE, 0, 0, 2, 4)
    lik = inpaint_log_lik(model, x, missing)
    out, q = restore(model, lik, fill_mean(x, missing, SHAPE), steps=60, lr=0.05, k=8)
    assert out.shape == (6, 16) and bool(((out >= 0) & (out <= 1)).all())
    assert float(q.trace_bound[-1].mean()) >= float(q.trace_bound[0].mean()) - 0.05


def test_denoise_estimate_weights_observation_and_model():
    from aevb.marginal_inference import denoise_estimate

    model = _tiny_model(z_dim=2)
    y = torch.rand(3, 16, generator=torch.Generator().manual_seed(1))
    q = GaussianPosterior(torch.zeros(3, 2), torch.full((3, 2), -30.0))  # a point mass at z = 0
    mu = model.decoder.mean(torch.zeros(3, 2)).detach()
    g = denoise_estimate(model, y, q, "gaussian", 0.2, model_sigma=0.1, k=2)
    assert torch.allclose(g, mu + 0.01 / 0.05 * (y - mu), atol=1e-4)
    # No noise at all: the observation is the clean image.
    assert torch.allclose(denoise_estimate(model, y, q, "salt-and-pepper", 0.0), y)
    # Salt and pepper: between the observation and the model's mean, pixel by pixel.
    sp = denoise_estimate(model, y, q, "salt-and-pepper", 0.3, model_sigma=0.2, k=2)
    lo, hi = torch.minimum(y, mu), torch.maximum(y, mu)
    assert bool(((sp >= lo - 1e-5) & (sp <= hi + 1e-5)).all())
    with pytest.raises(ValueError, match="kind"):
        denoise_estimate(model, y, q, "blur", 0.1)
