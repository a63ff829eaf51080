"""Bad input to the core API gets a clear error that names the fix (and good input is unchanged).

The entry points of aevb.bound, aevb.marginal, aevb.estimators, aevb.variance, aevb.posterior,
aevb.manifold, aevb.reparameterization and the networks of aevb.models: wrong shapes, integer
dtypes, NaN and infinities, empty batches, unknown names. Each case checks the exception type
and a phrase of the message that says what to do.
"""

import copy
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch
from torch.distributions import kl_divergence

from aevb import bound, estimators, manifold, marginal, posterior, variance
from aevb import reparameterization as rp
from aevb.linear_gaussian import linear_gaussian_model
from aevb.models import ModelSpec, build_model

X_DIM, Z_DIM = 16, 2


@pytest.fixture(scope="module")
def vae():
    return build_model(ModelSpec(x_dim=X_DIM, z_dim=Z_DIM, hidden=8), seed=0)


@pytest.fixture(scope="module")
def good():
    return torch.rand(5, X_DIM, generator=torch.Generator().manual_seed(0))


def _with(x, value):
    x = x.clone()
    x[1, -1] = value
    return x


# (name, bad x, exception, a phrase of the message)
BAD_DATA = [
    ("wrong width", lambda g: torch.rand(5, 10), ValueError, r"expected \(batch, 16\)"),
    ("images", lambda g: torch.rand(5, 4, 4), ValueError, "Flatten images first"),
    ("one row, 1-D", lambda g: torch.rand(X_DIM), ValueError, r"expected \(batch, 16\)"),
    ("int64", lambda g: g.round().long(), TypeError, r"x.float\(\) / 255"),
    ("uint8", lambda g: (g * 255).to(torch.uint8), TypeError, r"x.float\(\) / 255"),
    ("NaN", lambda g: _with(g, float("nan")), ValueError, "1 non-finite values"),
    ("inf", lambda g: _with(g, float("inf")), ValueError, "clean the data first"),
    ("empty", lambda g: g[:0], ValueError, "pass at least one row"),
    ("grey levels 0-255", lambda g: g * 255, ValueError, "divide by 255"),
    ("a list", lambda g: g.tolist(), TypeError, "torch.as_tensor"),
]

ENTRY_POINTS = {
    "elbo B": lambda m, x: bound.elbo(m, x, 1, "B"),
    "elbo A": lambda m, x: bound.elbo(m, x, 1, "A"),
    "elbo_a": lambda m, x: bound.elbo_a(m, x),
    "elbo_b": lambda m, x: bound.elbo_b(m, x, L=2),
    "minibatch_bound": lambda m, x: bound.minibatch_bound(m, x, N=100),
    "dataset_bound": lambda m, x: bound.dataset_bound(m, x, batch_size=2),
    "log_weights": lambda m, x: marginal.log_weights(m, x, 3),
    "importance_log_px": lambda m, x: marginal.importance_log_px(m, x, 3),
    "naive_elbo_surrogate": lambda m, x: estimators.naive_elbo_surrogate(m, x),
    "reparameterized_elbo_surrogate": lambda m, x: estimators.reparameterized_elbo_surrogate(m, x),
    "elbo_integrand": lambda m, x: estimators.elbo_integrand(m, x, m.encoder(torch.rand(5, 16))),
    "encoder_output_gradients": lambda m, x: variance.encoder_output_gradients(m, x, 2),
    "encoder_hidden": lambda m, x: variance.encoder_hidden(m, x),
    "output_layer_moments": lambda m, x: variance.output_layer_moments(m, x, torch.zeros(2, 5, 4)),
    "decoder_log_lik": lambda m, x: posterior.decoder_log_lik(m, x),
    "amortized_posterior": lambda m, x: posterior.amortized_posterior(m, x, repeats=1),
    "hmc_posterior": lambda m, x: posterior.hmc_posterior(m, x, 2, n_leapfrog=1),
    "local_grid_posterior": lambda m, x: posterior.local_grid_posterior(
        m, x, torch.zeros(5, 2), torch.ones(5, 2), points=3
    ),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_is_refused_with_the_fix(vae, good, entry, case):
    _, make, exc, phrase = case
    x = make(good)
    with pytest.raises(exc, match=phrase):
        ENTRY_POINTS[entry](vae, x)


@pytest.mark.parametrize("case", BAD_DATA[:8], ids=[c[0] for c in BAD_DATA[:8]])
def test_reconstruct_checks_its_input(vae, good, case):
    _, make, exc, phrase = case
    x = make(good)
    if x.shape[0] == 0:  # an empty batch reconstructs to an empty batch
        assert vae.reconstruct(x).shape == (0, X_DIM)
        return
    with pytest.raises(exc, match=phrase):
        vae.reconstruct(x)


def test_a_linear_gaussian_model_is_checked_against_its_x_dim():
    lg = linear_gaussian_model(x_dim=4, z_dim=2, sigma=0.5, seed=0)
    x = lg.sample(3, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"expected \(batch, 4\)"):
        bound.elbo(lg, torch.rand(3, 5))
    with pytest.raises(ValueError, match="non-finite"):
        bound.dataset_bound(lg, _with(x, float("nan")))
    with pytest.raises(TypeError, match="float"):
        marginal.importance_log_px(lg, x.long(), 2)
    # real-valued data (outside [0, 1]) is fine for a Gaussian model
    assert torch.isfinite(bound.elbo(lg, 10 * x)).all()


def test_a_bare_model_is_checked_against_its_decoder_or_at_least_for_dims_and_values(vae):
    # the book's ch02 builds such a model: the encoder a lambda, the decoder a VAE's
    q = vae.encoder(torch.rand(3, X_DIM))
    bare = SimpleNamespace(encoder=lambda x: q, decoder=vae.decoder, prior=vae.prior)
    with pytest.raises(ValueError, match=r"expected \(batch, 16\)"):
        bound.elbo_a(bare, torch.rand(3, 10))
    nameless = SimpleNamespace(
        encoder=lambda x: q, decoder=lambda z: vae.decoder(z), prior=vae.prior
    )
    with pytest.raises(ValueError, match=r"expected \(batch, features\)"):
        bound.elbo_b(nameless, torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="non-finite"):
        bound.elbo_b(nameless, _with(torch.rand(3, X_DIM), float("inf")))
    assert bound.elbo_b(nameless, torch.rand(3, X_DIM)).shape == (3,)


def test_the_models_own_check_input_is_used_once_per_call(vae):
    calls = []

    class Checked(SimpleNamespace):
        def check_input(self, x):
            calls.append(x.shape)
            if x.shape[1] != X_DIM:
                raise ValueError("custom check")

    m = Checked(encoder=vae.encoder, decoder=vae.decoder, prior=vae.prior)
    with pytest.raises(ValueError, match="custom check"):
        bound.elbo(m, torch.rand(4, 3))
    calls.clear()
    bound.dataset_bound(m, torch.rand(10, X_DIM), batch_size=3)  # four batches, one check
    assert calls == [(10, X_DIM)]


# ------------------------------------------------------------------------------------------
# The networks: a shape check without a pass over the data.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_decoders_refuse_a_wrong_latent_width_and_accept_sample_dims(decoder):
    m = build_model(ModelSpec(x_dim=X_DIM, z_dim=Z_DIM, hidden=8, decoder=decoder), seed=0)
    for call in (m.decoder, m.decoder.mean):
        with pytest.raises(ValueError, match=r"expected \(\.\.\., 2\).*N_z = 2"):
            call(torch.randn(5, 3))
        with pytest.raises(ValueError, match=r"expected \(\.\.\., 2\)"):
            call(torch.tensor(1.0))
        with pytest.raises(TypeError, match=r"z.float\(\)"):
            call(torch.zeros(5, 2, dtype=torch.long))
    assert m.decoder.mean(torch.randn(3, 5, 2)).shape == (3, 5, X_DIM)  # (L, batch, z_dim)
    assert m.decoder.mean(torch.randn(2)).shape == (X_DIM,)  # one z (book ch09)


def test_encoder_refuses_a_wrong_data_width(vae):
    with pytest.raises(ValueError, match=r"expected \(batch, 16\).*Flatten"):
        vae.encoder(torch.rand(5, 10))
    with pytest.raises(ValueError, match="Flatten images first"):
        vae.encoder.params(torch.rand(5, 4, 4))
    with pytest.raises(TypeError, match="/ 255"):
        vae.encoder(torch.zeros(5, X_DIM, dtype=torch.uint8))


# ------------------------------------------------------------------------------------------
# Names and other arguments, refused before any work.
# ------------------------------------------------------------------------------------------


def test_unknown_estimators_are_refused_by_every_bound(vae, good):
    for call in (
        lambda: bound.elbo(vae, good, 1, "C"),
        lambda: bound.minibatch_bound(vae, good, 10, 1, "b"),
        lambda: bound.dataset_bound(vae, good, estimator="a"),
    ):
        with pytest.raises(ValueError, match=r"use 'A' \(eq. 6\) or 'B' \(eq. 7\)"):
            call()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        bound.dataset_bound(vae, good, batch_size=0)
    with pytest.raises(ValueError, match="N must be an integer >= 1"):
        bound.minibatch_bound(vae, good, N=0)


def test_variance_arguments_are_checked_at_the_entry(vae, good):
    with pytest.raises(ValueError, match="use one of pathwise, score, score_loo"):
        variance.encoder_output_gradients(vae, good, 2, estimator="reinforce")
    with pytest.raises(ValueError, match=r"one value per datapoint, shape \(5,\)"):
        variance.encoder_output_gradients(vae, good, 2, estimator="score", baseline=torch.ones(3))
    with pytest.raises(ValueError, match=r"expected \(repeats, 5, 4\)"):
        variance.output_layer_moments(vae, good, torch.zeros(3, 5, 6))
    with pytest.raises(ValueError, match="repeats >= 2"):
        variance.output_layer_moments(vae, good, torch.zeros(1, 5, 4))
    square = lambda z: z.square().sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="use one of pathwise"):
        variance.gaussian_gradient_draws(square, 1.0, 1.0, 4, estimator="naive")
    with pytest.raises(ValueError, match="standard deviation > 0"):
        variance.gaussian_gradient_draws(square, 1.0, 0.0, 4)
    with pytest.raises(ValueError, match="non-finite"):
        variance.gaussian_gradient_draws(square, float("nan"), 1.0, 4)
    for summary in (variance.mean_stderr, variance.variance_stderr):
        with pytest.raises(ValueError, match="at least 2 draws"):
            summary(torch.ones(1, 3))


def test_marginal_chunk_sizes_are_checked(vae, good):
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        marginal.importance_log_px(vae, good, 3, chunk=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        marginal.importance_log_px(vae, good, 3, batch_size=0)


def test_estimator_surrogates_need_a_distribution_matching_x(vae, good):
    with pytest.raises(TypeError, match="torch.distributions.Distribution"):
        estimators.pathwise_surrogate(lambda z: z, torch.zeros(3))
    with pytest.raises(TypeError, match="torch.distributions.Distribution"):
        estimators.score_function_surrogate(lambda z: z, torch.zeros(3))
    with pytest.raises(ValueError, match=r"pass q = model.encoder\(x\)"):
        estimators.elbo_integrand(vae, good, vae.encoder(good[:2]))


def test_gaussian_parameters_are_checked(vae, good):
    lik = posterior.decoder_log_lik(vae, good)
    zeros = torch.zeros(5, Z_DIM)
    for call in (
        lambda mu, lv: posterior.gaussian_bound(lik, mu, lv),
        lambda mu, lv: posterior.importance_log_evidence(lik, mu, lv, 3),
        lambda mu, lv: posterior.optimize_gaussian_posterior(lik, mu, lv, 1),
        lambda mu, lv: posterior.moment_agreement(mu, lv, torch.randn(4, 5, 2)),
    ):
        with pytest.raises(ValueError, match=r"must both be \(n, z_dim\)"):
            call(torch.zeros(Z_DIM), torch.zeros(Z_DIM))
        with pytest.raises(ValueError, match="start from finite values"):
            call(_with(zeros, float("nan")), zeros)
        with pytest.raises(TypeError, match="float"):
            call(zeros.long(), zeros)
    with pytest.raises(ValueError, match=r"the model's N_z = 2"):
        lik(torch.zeros(1, 5, 3))  # the decoder's check
    with pytest.raises(ValueError, match="same datapoints"):
        posterior.moment_agreement(zeros, zeros, torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match="s >= 2"):
        posterior.moment_agreement(zeros, zeros, torch.randn(1, 5, 2))
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        posterior.optimize_gaussian_posterior(lik, zeros, zeros, -1)
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        posterior.importance_log_evidence(lik, zeros, zeros, 3, chunk=0)


def test_hmc_start_and_local_grid_are_checked(vae, good):
    with pytest.raises(ValueError, match=r"z0 is \(5, 3\); expected \(5, 2\)"):
        posterior.hmc_posterior(vae, good, 2, z0=torch.zeros(5, 3))
    with pytest.raises(ValueError, match="start the chains at finite points"):
        posterior.hmc_posterior(vae, good, 2, z0=_with(torch.zeros(5, 2), float("inf")))
    with pytest.raises(ValueError, match=r"must be \(5, 2\): one grid per row of x"):
        posterior.local_grid_posterior(vae, good, torch.zeros(5, 3), torch.ones(5, 3))
    with pytest.raises(ValueError, match="half_width must be > 0"):
        posterior.local_grid_posterior(vae, good, torch.zeros(5, 2), torch.zeros(5, 2))


def test_reparameterization_names_and_values_are_checked():
    with pytest.raises(ValueError, match=r"takes the parameters loc, scale \(unknown sd"):
        rp.NORMAL.rsample(3, loc=0.0, sd=1.0)
    with pytest.raises(ValueError, match=r"missing scale\); pass e.g. loc=1.0, scale=1.0"):
        rp.NORMAL.rsample(3, loc=0.0)
    with pytest.raises(ValueError, match="needs scale > 0"):
        rp.LAPLACE.rsample(3, loc=0.0, scale=-1.0)
    with pytest.raises(ValueError, match="non-finite"):
        rp.EXPONENTIAL.rsample(3, rate=float("nan"))
    eps = torch.full((3,), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"rep.noise\(n, generator"):
        rp.pathwise_gradient(rp.NORMAL, torch.tanh, eps, loc=0.0, scale=1.0)
    with pytest.raises(ValueError, match="unknown rate"):
        rp.finite_difference_gradient(rp.NORMAL, torch.tanh, eps.nan_to_num(), rate=1.0)
    with pytest.raises(ValueError, match="drop or fix the non-finite draws"):
        rp.ks_test(torch.tensor([0.1, float("nan")]), rp.NORMAL.reference(0.0, 1.0))
    with pytest.raises(ValueError, match=r"samples.reshape\(-1\)"):
        rp.ks_test(torch.zeros(4, 2), rp.NORMAL.reference(0.0, 1.0))


def test_tile_images_refuses_integers_and_non_finite_values():
    with pytest.raises(TypeError, match=r"images.float\(\) / 255"):
        manifold.tile_images(torch.zeros(4, 9, dtype=torch.uint8), (3, 3))
    with pytest.raises(ValueError, match="non-finite"):
        manifold.tile_images(torch.full((4, 9), float("nan")), (3, 3))
    with pytest.raises(ValueError, match="pass a 2-D tensor"):
        manifold.plot_tiles(None, torch.zeros(2, 3, 3), "t")


# ------------------------------------------------------------------------------------------
# Good input: the same values, bit for bit, as the unchecked computation.
# ------------------------------------------------------------------------------------------


def _reference_elbo(model, x, L, estimator):
    """The bound exactly as aevb.bound computed it before the checks were added."""
    q = model.encoder(x)
    z = q.rsample((L,))
    if estimator == "A":
        log_joint = model.prior().log_prob(z) + model.decoder(z).log_prob(x)
        return (log_joint - q.log_prob(z)).mean(0)
    return model.decoder(z).log_prob(x).mean(0) - kl_divergence(q, model.prior())


def _reference_dataset_bound(model, x, L, estimator, batch_size, generator):
    total = 0.0
    fork = torch.random.fork_rng(devices=[]) if generator is not None else nullcontext()
    with fork, torch.no_grad():
        if generator is not None:
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
        for start in range(0, x.shape[0], batch_size):
            b = _reference_elbo(model, x[start : start + batch_size], L, estimator)
            total += float(b.sum())
    return total / x.shape[0]


@pytest.mark.parametrize("estimator", ["A", "B"])
@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_valid_input_gives_bitwise_the_same_values(estimator, decoder):
    model = build_model(ModelSpec(x_dim=X_DIM, z_dim=Z_DIM, hidden=8, decoder=decoder), seed=1)
    x = torch.rand(7, X_DIM, generator=torch.Generator().manual_seed(2))
    for L in (1, 3):
        torch.manual_seed(5)
        got = bound.elbo(model, x, L, estimator)
        torch.manual_seed(5)
        want = _reference_elbo(model, x, L, estimator)
        assert torch.equal(got, want)
        torch.manual_seed(5)
        single = (bound.elbo_a if estimator == "A" else bound.elbo_b)(model, x, L)
        assert torch.equal(single, want)
        torch.manual_seed(5)
        mb = bound.minibatch_bound(model, x, N=70, L=L, estimator=estimator)
        assert torch.equal(mb, want.sum() * (70 / 7))
    got = bound.dataset_bound(
        model, x, 2, estimator, batch_size=3, generator=torch.Generator().manual_seed(3)
    )
    want = _reference_dataset_bound(model, x, 2, estimator, 3, torch.Generator().manual_seed(3))
    assert got == want


def test_the_data_is_named_in_the_error(vae):
    from aevb._checks import check_model_data

    with pytest.raises(ValueError, match=r"^x_test has shape \(3, 10\); expected \(batch, 16\)"):
        check_model_data(vae, torch.rand(3, 10), name="x_test")
    with pytest.raises(ValueError, match=r"^x_test has values in .* divide by 255"):
        check_model_data(vae, torch.full((3, X_DIM), 2.0), name="x_test")
    lg = linear_gaussian_model(x_dim=4, z_dim=2, sigma=0.5, seed=0)
    with pytest.raises(ValueError, match=r"^x_test has shape \(0, 4\): no datapoints"):
        check_model_data(lg, torch.zeros(0, 4), name="x_test")


@pytest.fixture(scope="module")
def vae_elsewhere(vae):
    """The model on another device than the data: "meta" stands in for a GPU here (on a GPU
    machine ``fit`` leaves a model on the GPU while data sets load on the CPU)."""
    return copy.deepcopy(vae).to("meta")


@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if e != "elbo_integrand"])
def test_data_on_another_device_than_the_model_is_refused_with_the_fix(vae_elsewhere, good, entry):
    with pytest.raises(ValueError, match=r"x is on cpu but the model is on meta.*x\.to\('meta'\)"):
        ENTRY_POINTS[entry](vae_elsewhere, good)
