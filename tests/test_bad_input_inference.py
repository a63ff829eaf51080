"""Bad input to the inference, training and experiment modules gets a clear error naming the fix.

The project's rule: wrong shapes, non-finite values, wrong dtypes, empty batches, masks of the
wrong shape or dtype and unknown names are refused at the public entry point, with an error
that says what was expected (never a raw torch error, a silent NaN or a hang). Covered here:
aevb.marginal_inference, hmc, marginal_hmc, intractable, linear_gaussian, wake_sleep, mcem,
full_vb, batched, zoo and the figure scripts. Each case matches a key phrase of the message.
"""

from __future__ import annotations

import math

import pytest
import torch

from aevb import batched, full_vb, intractable, mcem, wake_sleep, zoo
from aevb import hmc as H
from aevb import marginal_hmc as MH
from aevb import marginal_inference as mi
from aevb.experiments import figure2, figure3
from aevb.linear_gaussian import LinearGaussianModel, linear_gaussian_model
from aevb.models import ModelSpec, build_model
from aevb.posterior import GaussianPosterior
from aevb.train import TrainConfig

SHAPE = (4, 4)
D, Z = 16, 2


def _vae(decoder: str = "bernoulli"):
    torch.manual_seed(0)
    return build_model(ModelSpec(x_dim=D, z_dim=Z, hidden=8, decoder=decoder)).eval()


MODEL = _vae()
LG = linear_gaussian_model(5, Z, 0.5, seed=0)
X = torch.bernoulli(torch.full((3, D), 0.4), generator=torch.Generator().manual_seed(1))
MISSING = mi.block_mask(3, SHAPE, 0, 0, 2, 4)
Q = GaussianPosterior(torch.zeros(3, Z), torch.zeros(3, Z))
CFG = TrainConfig(samples=20, batch_size=5, eval_points=5, n_evals=2)


def _with(t: torch.Tensor, value: float) -> torch.Tensor:
    out = t.clone()
    out[0, 5] = value
    return out


WIDE = torch.rand(3, 10)
FLAT = X[0]  # one image, not a batch: (16,)
INTS = X.long()
NAN = _with(X, math.nan)
INF = _with(X, math.inf)
EMPTY = X[:0]
Z0 = torch.zeros(3, Z)


def _lik(z):
    return mi.inpaint_log_lik(MODEL, X, MISSING)(z)


# ------------------------------------------------------------------------------------------
# aevb.marginal_inference: every function that takes images, one bad input at a time
# ------------------------------------------------------------------------------------------

#: name -> a call with the images replaced by the argument.
IMAGE_CALLS = {
    "psnr": lambda x: mi.psnr(x, X),
    "bernoulli_log_likelihood": lambda x: mi.bernoulli_log_likelihood(x, X),
    "gaussian_noise": lambda x: mi.gaussian_noise(x, 0.1),
    "salt_and_pepper": lambda x: mi.salt_and_pepper(x, 0.1),
    "downsample": lambda x: mi.downsample(x, SHAPE, 2),
    "mean_filter": lambda x: mi.mean_filter(x, SHAPE),
    "median_filter": lambda x: mi.median_filter(x, SHAPE),
    "fill_mean": lambda x: mi.fill_mean(x, MISSING, SHAPE),
    "fill_median": lambda x: mi.fill_median(x, MISSING, SHAPE),
    "nearest_training_image": lambda x: mi.nearest_training_image(x, X),
    "nearest_neighbour": lambda x: mi.nearest_neighbour(x, X),
    "knn_probabilities": lambda x: mi.knn_probabilities(x, (~MISSING).float(), X, k=2),
    "noise_log_lik": lambda x: mi.noise_log_lik(MODEL, x, "gaussian", 0.1),
    "denoise_estimate": lambda x: mi.denoise_estimate(MODEL, x, Q, "gaussian", 0.1),
    "inpaint_log_lik": lambda x: mi.inpaint_log_lik(MODEL, x, MISSING),
    "restore": lambda x: mi.restore(MODEL, _lik, x, 1),
    "pseudo_gibbs": lambda x: mi.pseudo_gibbs(MODEL, x, MISSING, 2),
    "metropolis_within_gibbs": lambda x: mi.metropolis_within_gibbs(MODEL, x, MISSING, 2),
    "missing_log_likelihood": lambda x: mi.missing_log_likelihood(MODEL, x, MISSING, Q, 2),
    "missing_log_likelihood_from_samples": lambda x: mi.missing_log_likelihood_from_samples(
        MODEL, x, MISSING, torch.zeros(2, 3, Z)
    ),
}
#: The name each function gives its images in its errors (default "x").
ARG = {
    "psnr": "estimate",
    "bernoulli_log_likelihood": "probs",
    "mean_filter": "y",
    "median_filter": "y",
    "nearest_training_image": "y",
    "nearest_neighbour": "query",
    "noise_log_lik": "y",
    "denoise_estimate": "y",
    "restore": "init",
}
#: Functions that know the width of the images (from the model, the shape or the other image).
SIZED = [k for k in IMAGE_CALLS if k not in ("gaussian_noise", "salt_and_pepper")]
#: Functions whose images come with a mask of missing pixels they never read ...
MASKED = {"fill_mean", "fill_median", "inpaint_log_lik", "pseudo_gibbs", "metropolis_within_gibbs"}
#: ... and those that score the missing pixels against their true values.
SCORED = {"missing_log_likelihood", "missing_log_likelihood_from_samples"}


@pytest.mark.parametrize("name", SIZED)
def test_images_of_the_wrong_width_say_the_expected_shape(name):
    expected = rf"^{ARG.get(name, 'x')} has shape \(3, 10\)(; expected \(batch, 16\)| but)"
    with pytest.raises(ValueError, match=expected):
        IMAGE_CALLS[name](WIDE)


@pytest.mark.parametrize("name", [k for k in SIZED if k != "downsample"])  # (..., D) is valid
def test_a_single_unbatched_image_is_refused_with_the_fix(name):
    arg = ARG.get(name, "x")
    with pytest.raises(ValueError, match=rf"^{arg} has shape \(16,\); expected \(batch"):
        IMAGE_CALLS[name](FLAT)


@pytest.mark.parametrize("name", list(IMAGE_CALLS))
def test_integer_images_ask_for_floats(name):
    arg = ARG.get(name, "x")
    with pytest.raises(TypeError, match=rf"^{arg} has dtype torch.int64; pass floating point"):
        IMAGE_CALLS[name](INTS)


@pytest.mark.parametrize("bad", [NAN, INF], ids=["nan", "inf"])
@pytest.mark.parametrize("name", list(IMAGE_CALLS))
def test_non_finite_images_are_refused_not_propagated(name, bad):
    fix = "clean the data"
    if name in MASKED:
        fix = "mark missing pixels in the boolean mask"
    elif name in SCORED:
        fix = "x must hold the true pixels everywhere"
    arg = ARG.get(name, "x")
    with pytest.raises(ValueError, match=rf"^{arg} holds 1 non-finite values .*; {fix}"):
        IMAGE_CALLS[name](bad)


@pytest.mark.parametrize(
    "name",
    ["noise_log_lik", "inpaint_log_lik", "restore", "pseudo_gibbs", "missing_log_likelihood"],
)
def test_an_empty_batch_for_a_model_is_refused(name):
    with pytest.raises(ValueError, match="no (datapoints|images)|expected \\(0, 16\\)"):
        IMAGE_CALLS[name](EMPTY)


def test_inpainting_images_outside_the_unit_interval_name_the_fix():
    with pytest.raises(ValueError, match="divide by 255"):
        mi.pseudo_gibbs(MODEL, X * 255, MISSING, 2)


MASK_CALLS = {
    "psnr": lambda m: mi.psnr(X, X.flip(0), m),
    "bernoulli_log_likelihood": lambda m: mi.bernoulli_log_likelihood(X, X, m),
    "fill_mean": lambda m: mi.fill_mean(X, m, SHAPE),
    "fill_median": lambda m: mi.fill_median(X, m, SHAPE),
    "inpaint_log_lik": lambda m: mi.inpaint_log_lik(MODEL, X, m),
    "pseudo_gibbs": lambda m: mi.pseudo_gibbs(MODEL, X, m, 2),
    "metropolis_within_gibbs": lambda m: mi.metropolis_within_gibbs(MODEL, X, m, 2),
    "missing_log_likelihood": lambda m: mi.missing_log_likelihood(MODEL, X, m, Q, 2),
    "missing_log_likelihood_from_samples": lambda m: mi.missing_log_likelihood_from_samples(
        MODEL, X, m, torch.zeros(2, 3, Z)
    ),
}


@pytest.mark.parametrize("name", list(MASK_CALLS))
def test_a_mask_of_the_wrong_shape_says_how_to_expand_it(name):
    for bad in (MISSING[:, :8], MISSING[0]):
        with pytest.raises(ValueError, match=r"expected \(3, 16\).*expand_as"):
            MASK_CALLS[name](bad)


@pytest.mark.parametrize("name", list(MASK_CALLS))
def test_a_mask_that_is_not_boolean_asks_for_one(name):
    for bad in (MISSING.float(), MISSING.long()):
        with pytest.raises(TypeError, match="pass a boolean mask"):
            MASK_CALLS[name](bad)


def test_observed_weights_need_the_image_shape_and_0_1_values():
    with pytest.raises(ValueError, match=r"one weight per pixel"):
        mi.nearest_training_image(X, X, observed=torch.ones(3, 8))
    with pytest.raises(TypeError, match=r"observed.float\(\)"):
        mi.knn_probabilities(X, (~MISSING).long(), X, k=2)
    with pytest.raises(ValueError, match=r"weights in \[0, 1\]"):
        mi.knn_probabilities(X, torch.full((3, D), 2.0), X, k=2)


def test_unknown_noise_kinds_and_bad_levels_are_refused():
    with pytest.raises(ValueError, match="use 'gaussian' or 'salt-and-pepper'"):
        mi.noise_log_lik(MODEL, X, "poisson", 0.1)
    with pytest.raises(ValueError, match="use 'gaussian' or 'salt-and-pepper'"):
        mi.denoise_estimate(MODEL, X, Q, "speckle", 0.1)
    with pytest.raises(ValueError, match="level must be a finite number"):
        mi.noise_log_lik(MODEL, X, "gaussian", math.nan)
    with pytest.raises(ValueError, match="level must be >= 0"):
        mi.noise_log_lik(MODEL, X, "gaussian", -0.1)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
        mi.noise_log_lik(MODEL, X, "salt-and-pepper", 1.0)
    with pytest.raises(ValueError, match="model_sigma must be > 0"):
        mi.noise_log_lik(MODEL, X, "gaussian", 0.1, model_sigma=0.0)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        mi.gaussian_noise(X, -1.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        mi.superres_log_lik(MODEL, mi.downsample(X, SHAPE, 2), SHAPE, 2, sigma=0.0)


def test_masks_and_shapes_of_images_are_checked_when_made():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        mi.block_mask(-1, SHAPE, 0, 0, 2, 2)
    with pytest.raises(ValueError, match="top must be an integer >= 0"):
        mi.block_mask(2, SHAPE, -1, 0, 2, 2)
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        mi.random_mask(2, 0, 0.5)
    with pytest.raises(ValueError, match=r"\(height, width\)"):
        mi.mean_filter(X, 16)
    with pytest.raises(ValueError, match=r"expected \(batch, 25\)"):
        mi.downsample(X, (5, 5), 1)
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        mi.bilinear_upsample(X, SHAPE, 0)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        mi.median_filter(X, SHAPE, size=0)
    with pytest.raises(ValueError, match="the model's images have 16"):
        mi.superres_log_lik(MODEL, torch.rand(3, 4), (2, 2), 1)
    with pytest.raises(ValueError, match=r"expected \(batch, 4\)"):
        mi.superres_log_lik(MODEL, torch.rand(3, 9), SHAPE, 2)


def test_inpainting_needs_a_bernoulli_decoder():
    gaussian = _vae("gaussian")
    for call in (
        lambda: mi.inpaint_log_lik(gaussian, X, MISSING),
        lambda: mi.pseudo_gibbs(gaussian, X, MISSING, 2),
        lambda: mi.metropolis_within_gibbs(gaussian, X, MISSING, 2),
    ):
        with pytest.raises(TypeError, match="decoder='bernoulli'"):
            call()


def test_samplers_posteriors_and_samples_must_fit_the_images():
    with pytest.raises(ValueError, match=r"burn_in=5; use an integer in \[0, steps\)"):
        mi.pseudo_gibbs(MODEL, X, MISSING, 2, burn_in=5)
    with pytest.raises(ValueError, match="burn_in=-1"):
        mi.metropolis_within_gibbs(MODEL, X, MISSING, 2, burn_in=-1)
    two = GaussianPosterior(torch.zeros(2, Z), torch.zeros(2, Z))
    with pytest.raises(ValueError, match="one posterior per image"):
        mi.missing_log_likelihood(MODEL, X, MISSING, two, 2)
    with pytest.raises(ValueError, match="one posterior per image"):
        wrong_z = GaussianPosterior(torch.zeros(3, 5), torch.zeros(3, 5))
        mi.denoise_estimate(MODEL, X, wrong_z, "gaussian", 0.1)
    with pytest.raises(TypeError, match="GaussianPosterior"):
        mi.missing_log_likelihood(MODEL, X, MISSING, Z0, 2)
    with pytest.raises(ValueError, match=r"expected \(s, 3, 2\)"):
        mi.missing_log_likelihood_from_samples(MODEL, X, MISSING, Z0)
    with pytest.raises(ValueError, match="z holds 12 non-finite"):
        mi.missing_log_likelihood_from_samples(MODEL, X, MISSING, torch.full((2, 3, Z), math.nan))
    with pytest.raises(TypeError, match="log_lik must be a function"):
        mi.restore(MODEL, X, X, 1)


def test_neighbours_need_enough_candidates_of_the_same_width():
    with pytest.raises(ValueError, match="use k <= 3"):
        mi.nearest_neighbour(X, X, k=4)
    with pytest.raises(ValueError, match=r"but candidates has \(5, 10\); compare images of one"):
        mi.nearest_neighbour(X, torch.rand(5, 10))
    with pytest.raises(ValueError, match=r"transform\(train\) gave"):
        mi.nearest_training_image(X, X, transform=lambda t: t[0])


def test_valid_calls_of_chapter_10_still_pass():
    """Gaussian noise leaves [0, 1] and filtered images are unclipped: both are valid."""
    y = mi.gaussian_noise(X, 0.5, torch.Generator().manual_seed(0))
    assert float(y.min()) < 0 or float(y.max()) > 1
    lik = mi.noise_log_lik(MODEL, y, "gaussian", 0.5)
    _, q = mi.restore(MODEL, lik, mi.median_filter(y, SHAPE), 2)
    assert mi.denoise_estimate(MODEL, y, q, "gaussian", 0.5, k=2).shape == (3, D)
    assert torch.isfinite(mi.psnr(y.clamp(-1, 2), X)).all()


# ------------------------------------------------------------------------------------------
# aevb.hmc and aevb.marginal_hmc
# ------------------------------------------------------------------------------------------

LOG_PROB = H.posterior_log_prob(MODEL, X)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"z0": torch.full((3, Z), math.nan)}, ValueError, "start the chains at finite points"),
        ({"z0": torch.zeros(5, Z)}, ValueError, "built for 3 datapoints"),
        ({"z0": torch.zeros(3, 4)}, ValueError, "N_z = 2"),
        ({"z0": torch.zeros(3, Z, dtype=torch.long)}, TypeError, "float tensor"),
        ({"z0": torch.zeros(Z)}, ValueError, r"z0\[None\]"),
        ({"step_size": 0.0}, ValueError, "positive step size"),
        ({"step_size": math.nan}, ValueError, "positive step size"),
        ({"thin": 0}, ValueError, "thin must be an integer >= 1"),
        ({"warmup": -1}, ValueError, "warmup must be an integer >= 0"),
        ({"target_accept": 1.5}, ValueError, r"target_accept=1.5; use a value in \(0, 1\)"),
        ({"jitter": 2.0}, ValueError, r"jitter=2.0; use a value in \[0, 1\)"),
        ({"log_prob": torch.zeros(3)}, TypeError, "log_prob must be a function"),
        ({"log_prob": lambda z: z.sum()}, ValueError, r"expected \(3,\), one log density"),
        ({"log_prob": lambda z: z[:, 0] / 0.0}, ValueError, "is not finite"),
    ],
)
def test_hmc_checks_its_start_once(kwargs, error, match):
    args = {"log_prob": LOG_PROB, "z0": Z0, "n_samples": 1, "warmup": 1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        H.hmc(args.pop("log_prob"), args.pop("z0"), args.pop("n_samples"), **args)


@pytest.mark.parametrize("bad", [WIDE, FLAT, INTS, NAN, EMPTY, X * 2])
def test_posterior_log_prob_checks_the_data(bad):
    with pytest.raises((ValueError, TypeError), match="expected|floating|non-finite|no data|255"):
        H.posterior_log_prob(MODEL, bad)


def test_one_datapoint_may_run_many_chains():
    res = H.hmc(H.posterior_log_prob(MODEL, X[:1]), torch.zeros(4, Z), 1, warmup=1)
    assert res.samples.shape == (1, 4, Z)


def test_marginal_hmc_functions_check_their_inputs():
    step = torch.full((3,), 0.1)
    with pytest.raises(ValueError, match="one step size per chain"):
        MH.hmc_transition(LOG_PROB, Z0, torch.tensor(0.1))
    with pytest.raises(ValueError, match="one row per chain"):
        MH.hmc_transition(LOG_PROB, Z0[0], step)
    with pytest.raises(ValueError, match="jitter"):
        MH.sample_posterior(LOG_PROB, Z0, 2, warmup=1, jitter=1.5)
    with pytest.raises(ValueError, match=r"expected \(L, batch, D\)"):
        MH.fit_gaussian(torch.randn(5, Z))
    with pytest.raises(ValueError, match="samples holds"):
        MH.fit_gaussian(torch.full((5, 3, Z), math.nan))
    with pytest.raises(ValueError, match="scale="):
        MH.fit_gaussian(torch.randn(5, 3, Z), scale=0.0)
    with pytest.raises(ValueError, match="log_joint holds 12 NaN"):
        MH.appendix_d_log_px(torch.full((4, 3), math.nan), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"expected \(L, 3, 2\)"):
        MH.log_joint_at(MODEL, X, Z0)
    with pytest.raises(ValueError, match="built for 3 datapoints"):
        MH.hmc_marginal(MODEL, X, 2, warmup=1, z0=torch.zeros(5, Z))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        MH.hmc_log_px(MODEL, X, 2, batch_size=0, warmup=1)
    with pytest.raises(TypeError, match="hmc_marginal"):
        MH.hmc_log_px(MODEL, X, 2, warmup=1, z0=Z0)


@pytest.mark.parametrize("bad", [WIDE, INTS, NAN, INF, EMPTY])
def test_appendix_d_refuses_bad_data_before_sampling(bad):
    with pytest.raises((ValueError, TypeError), match="expected|floating|non-finite|no data"):
        MH.hmc_marginal(MODEL, bad, 2, warmup=1)
    with pytest.raises((ValueError, TypeError), match="expected|floating|non-finite|no data"):
        MH.hmc_log_px(LG, torch.rand(3, 7) if bad is WIDE else bad[:, 1:6], 2, warmup=1)


# ------------------------------------------------------------------------------------------
# aevb.intractable and aevb.linear_gaussian
# ------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_grids_too_large_to_finish_are_refused_at_once():
    big = build_model(ModelSpec(x_dim=D, z_dim=20, hidden=8))
    with pytest.raises(ValueError, match="exponential cost of Section 2.1"):
        intractable.grid_log_marginal(big, X, points=32)
    with pytest.raises(ValueError, match="exponential cost of Section 2.1"):
        intractable.time_grid_marginal(big, X, points=32)
    six = build_model(ModelSpec(x_dim=D, z_dim=6, hidden=8))
    with pytest.raises(ValueError, match="holds the whole grid in memory"):
        intractable.grid_posterior(six, X, points=32)


def test_grid_functions_check_data_limits_and_nodes():
    with pytest.raises(ValueError, match=r"expected \(batch, 16\)"):
        intractable.grid_log_marginal(MODEL, WIDE, points=4)
    with pytest.raises(ValueError, match="non-finite"):
        intractable.grid_posterior(MODEL, NAN, points=4)
    with pytest.raises(ValueError, match="no datapoints"):
        intractable.grid_posterior(MODEL, EMPTY, points=4)
    with pytest.raises(ValueError, match="limit=-1.0"):
        intractable.grid_nodes(4, -1.0)
    with pytest.raises(ValueError, match="start must be an integer >= 0"):
        intractable.latent_grid(2, 4, start=-3)
    with pytest.raises(ValueError, match=r"expected \(G, 2\)"):
        intractable.log_joint(MODEL, X, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="n_data must be an integer >= 1"):
        intractable.mcem_gradient_evaluations(-1, 10)


def test_grid_posterior_methods_check_shapes():
    x = LG.sample(3, generator=torch.Generator().manual_seed(0))
    gp = intractable.grid_posterior(LG, x, points=8)
    with pytest.raises(ValueError, match=r"expected \(3,\) and \(2,\)"):
        gp.kl_from(LG.encoder(x[:2]))
    with pytest.raises(ValueError, match=r"one value per grid node and datapoint"):
        gp.expectation_under(LG.encoder(x), torch.zeros(5, 3))


def test_closed_forms_need_the_linear_gaussian_model_and_its_data():
    with pytest.raises(TypeError, match="linear_gaussian_model"):
        intractable.linear_gaussian_bound(MODEL, X)
    with pytest.raises(TypeError, match="grid_posterior"):
        intractable.kl_to_posterior(MODEL, X)
    with pytest.raises(ValueError, match=r"expected \(batch, 5\)"):
        intractable.linear_gaussian_expected_log_likelihood(LG, torch.rand(3, 7))
    with pytest.raises(ValueError, match="non-finite"):
        LG.log_marginal(torch.full((3, 5), math.nan))
    with pytest.raises(TypeError, match="floating point"):
        LG.posterior(torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="positive noise standard deviation"):
        linear_gaussian_model(5, 2, sigma=-0.5)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        LinearGaussianModel(5, 2).sample(0)


# ------------------------------------------------------------------------------------------
# Training: wake-sleep, Monte Carlo EM, full VB, several models at once
# ------------------------------------------------------------------------------------------


def test_wake_and_sleep_losses_check_their_inputs():
    with pytest.raises(ValueError, match=r"expected \(batch, 5\)"):
        wake_sleep.wake_loss(LG, torch.rand(3, 7))
    with pytest.raises(ValueError, match="non-finite"):
        wake_sleep.wake_loss(MODEL, NAN)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        wake_sleep.sleep_loss(MODEL, 0)
    with pytest.raises(ValueError, match="use 'sample'"):
        wake_sleep.sleep_loss(MODEL, 3, "dream")


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "fit", [wake_sleep.fit_wake_sleep, mcem.fit_mcem], ids=["wake-sleep", "mcem"]
)
def test_training_refuses_bad_models_configs_and_data(fit):
    with pytest.raises(ValueError, match="no datapoints"):
        fit(_vae(), EMPTY, CFG, show_progress=False)
    with pytest.raises(TypeError, match="build_model"):
        fit(LG, torch.rand(10, 5), CFG, show_progress=False)
    with pytest.raises(TypeError, match="TrainConfig"):
        fit(_vae(), X, {"samples": 10}, show_progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        fit(_vae(), NAN, CFG, show_progress=False)


def test_mcem_and_wake_sleep_settings_are_checked_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("AEVB_CACHE", str(tmp_path))
    for kwargs, match in (
        ({"jitter": 2.0}, "jitter"),
        ({"target_accept": 2.0}, "target_accept"),
        ({"init_step": -1.0}, "init_step"),
    ):
        with pytest.raises(ValueError, match=match):
            mcem.fit_mcem(_vae(), X, CFG, show_progress=False, **kwargs)
    with pytest.raises(ValueError, match="sleep='dreams'"):
        wake_sleep.trained_wake_sleep(MODEL.spec, CFG, X, sleep="dreams")
    assert not any(tmp_path.iterdir())  # refused before any training or caching


def test_full_vb_checks_data_names_and_model():
    vb = full_vb.FullVBVAE(D, Z, 8)
    with pytest.raises(ValueError, match="divide by 255"):
        full_vb.full_vb_bound(vb, X * 5, 10)
    with pytest.raises(ValueError, match="non-finite"):
        full_vb.full_vb_bound(vb, NAN, 10)
    with pytest.raises(ValueError, match=r"expected \(batch, 16\)"):
        full_vb.expected_bound(vb, WIDE, 2)
    with pytest.raises(ValueError, match="prior_std"):
        full_vb.full_vb_bound(vb, X, 10, prior_std=0.0)
    fit = dict(batch_size=5, eval_points=5, n_evals=2, show_progress=False)
    with pytest.raises(ValueError, match="binarize='dymanic'"):
        full_vb.fit_full_vb(vb, X, 20, binarize="dymanic", **fit)
    with pytest.raises(ValueError, match="no datapoints"):
        full_vb.fit_full_vb(vb, EMPTY, 20, **fit)
    with pytest.raises(TypeError, match=r"x.float\(\) / 255"):
        full_vb.fit_full_vb(vb, (X * 255).to(torch.uint8), 20, **fit)
    with pytest.raises(TypeError, match="FullVBVAE"):
        full_vb.fit_full_vb(MODEL, X, 20, **fit)
    with pytest.raises(ValueError, match="estimator='C'"):
        full_vb.fit_full_vb(vb, X, 20, estimator="C", **fit)
    with pytest.raises(ValueError, match=r"train has shape \(16,\)"):
        full_vb.trained_full_vb(FLAT, 20)
    with pytest.raises(TypeError, match="DataSet or an"):
        full_vb.trained_full_vb([[0.0] * D], 20)


def test_fit_batched_checks_its_models_and_data():
    with pytest.raises(TypeError, match=r"pass \[model\]"):
        batched.fit_batched(_vae(), X, CFG, show_progress=False)
    with pytest.raises(ValueError, match="no datapoints"):
        batched.fit_batched([_vae()], EMPTY, CFG, show_progress=False)
    with pytest.raises(ValueError, match="at least one model"):
        batched.StackedVAE([])
    with pytest.raises(ValueError, match="only z_dim may differ"):
        batched.StackedVAE([_vae(), build_model(ModelSpec(10, Z, 8))])
    with pytest.raises(TypeError, match="TrainConfig"):
        batched.check_batchable([_vae()], {"samples": 10})
    with pytest.raises(TypeError, match=r"e.g. \(3, 5\)"):
        batched.figure2_models("mnist", 5)


# ------------------------------------------------------------------------------------------
# The standard models and the figure scripts: checked before any data or training
# ------------------------------------------------------------------------------------------


def test_standard_models_refuse_bad_lengths_and_options_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("AEVB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="samples must be an integer >= 1, got 0"):
        zoo.mnist_vae(samples=0)
    with pytest.raises(TypeError, match="unknown training option.*'lrr'.*batch_size"):
        zoo.mnist_vae(samples=100, lrr=0.1)
    with pytest.raises(ValueError, match="z_dim must be an integer >= 1"):
        zoo.mnist_latent_vae(0)
    with pytest.raises(ValueError, match="leave binarize out"):
        zoo.continuous_vae(binarize="dynamic")
    assert not any(tmp_path.iterdir())


def test_figure_scripts_check_their_inputs(monkeypatch):
    monkeypatch.setenv("AEVB_THREADS", "two")
    with pytest.raises(ValueError, match="AEVB_THREADS='two'"):
        with figure2.cpu_threads(torch.device("cpu")):
            pass
    monkeypatch.setenv("AEVB_THREADS", "0")
    with pytest.raises(ValueError, match="whole number of CPU threads >= 1"):
        with figure2.cpu_threads(torch.device("cpu")):
            pass
    with pytest.raises(ValueError, match="use 'mnist' or 'continuous'"):
        figure2.plot({}, baselines={"MNIST": -100.0})
    with pytest.raises(ValueError, match="finite number"):
        figure2.plot({}, baselines={"mnist": math.nan})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        figure3.checkpoints(1000, batch_size=0)
    with pytest.raises(ValueError, match="span=0"):
        figure3.checkpoints(1000, span=0)
    s = {"hmc_samples": 2, "importance_samples": 2}
    with pytest.raises(ValueError, match=r"expected \(batch, 16\)"):
        figure3.evaluate(MODEL, WIDE, X, s)
    with pytest.raises(ValueError, match=r"s lacks 'hmc_samples'.*figure3.settings\(\)"):
        figure3.evaluate(MODEL, X, X, {})
