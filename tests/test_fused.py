"""fit()'s fast path for the paper's model (aevb._fused): the same bound and gradient as
elbo_b with autograd, the same training as the general path, and the same safeguards."""

import pytest
import torch

import aevb._fused as fused
from aevb.bound import elbo_b
from aevb.models import GaussianMLPDecoder, ModelSpec, build_model
from aevb.train import NonFiniteBoundError, TrainConfig, fit


def _data(n=200, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(3, d, generator=g)
    return (protos[torch.randint(3, (n,), generator=g)] * 0.8 + 0.1).clamp(0, 1)


def _model(decoder="bernoulli", seed=0, **decoder_options):
    torch.manual_seed(seed)
    model = build_model(ModelSpec(x_dim=12, z_dim=3, hidden=7, decoder=decoder, init_std=0.3))
    if decoder_options:
        model.decoder = GaussianMLPDecoder(3, 12, 7, **decoder_options)
    return model


CASES = [
    ("bernoulli", 1, {}),
    ("bernoulli", 3, {}),
    ("gaussian", 1, {}),
    ("gaussian", 2, {"mean_activation": "identity"}),
    ("gaussian", 1, {"min_log_var": -0.5}),
]


@pytest.mark.parametrize("decoder,L,options", CASES)
def test_bound_and_gradient_equal_elbo_b_with_autograd(decoder, L, options):
    model, x = _model(decoder, **options), _data(6)
    assert fused.supports(model, "B")
    torch.manual_seed(1)
    bound = elbo_b(model, x, L).mean()
    model.zero_grad()
    (-bound).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    torch.manual_seed(1)  # the same noise: drawn as rsample((L,)) draws it
    got = fused.FusedELBO(model, L).step(x)
    assert float(got) == pytest.approx(float(bound.detach()), rel=1e-5)
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "decoder,binarize,weight_prior", [("bernoulli", "dynamic", True), ("gaussian", None, False)]
)
def test_fit_trains_the_same_with_and_without_the_fast_path(
    decoder, binarize, weight_prior, monkeypatch
):
    x, xt = _data(), _data(50, seed=1)
    cfg = TrainConfig(
        samples=800,
        batch_size=40,
        lr=0.05,
        binarize=binarize,
        weight_prior=weight_prior,
        eval_points=50,
        n_evals=4,
    )
    fast = _model(decoder)
    h_fast = fit(fast, x, cfg, xt, show_progress=False)
    monkeypatch.setattr(fused, "supports", lambda model, estimator: False)
    slow = _model(decoder)
    h_slow = fit(slow, x, cfg, xt, show_progress=False)
    assert h_fast.samples == h_slow.samples
    assert h_fast.train_bound == pytest.approx(h_slow.train_bound, rel=1e-4)
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fast_path_is_deterministic():
    x = _data()
    runs = []
    for unrelated in (123, 456):
        model = _model()
        torch.manual_seed(unrelated)  # unrelated global state must not matter
        hist = fit(model, x, TrainConfig(samples=600, batch_size=40, seed=7), show_progress=False)
        runs.append((hist.train_bound, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_only_the_unmodified_paper_model_takes_the_fast_path():
    assert not fused.supports(_model(), "A")
    hooked = _model()
    hooked.decoder.hidden.register_forward_hook(lambda *args: None)
    assert not fused.supports(hooked, "B")
    patched = _model()
    patched.decoder.forward = lambda z: None
    assert not fused.supports(patched, "B")
    doubled = _model().double()
    assert not fused.supports(doubled, "B")


def test_non_finite_bound_on_the_fast_path_keeps_the_last_good_parameters():
    model = _model()
    with torch.no_grad():
        model.encoder.out.bias[3:].fill_(200.0)  # log σ² = 200: σ² overflows, KL is inf
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteBoundError, match="at step 0"):
        fit(model, _data(), TrainConfig(samples=400, batch_size=40), show_progress=False)
    # fit leaves the model on the device it trained on (a GPU by default, where there is one)
    assert all(torch.equal(p.cpu(), q) for p, q in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("L", [1, 3])
def test_without_the_exact_bound_the_gradient_is_the_same_bit_for_bit(L):
    """fit() needs the bound only to check it is finite: exact=False skips the log-likelihood
    when the bound is certainly finite, and returns None; the gradient does not change."""
    model, x = _model(), _data(6)
    step = fused.FusedELBO(model, L)
    torch.manual_seed(1)
    bound = step.step(x)
    expected = [p.grad.clone() for p in model.parameters()]
    torch.manual_seed(1)
    assert step.step(x, exact=False) is None and torch.isfinite(bound)
    for p, g in zip(model.parameters(), expected, strict=True):
        assert torch.equal(p.grad, g)


@pytest.mark.parametrize("logit", [float("inf"), float("nan"), 3e37])
def test_without_the_exact_bound_a_bound_that_may_not_be_finite_is_computed(logit):
    model, x = _model(), _data(6)
    with torch.no_grad():
        model.decoder.out.bias[0] = logit  # a logit past the certificate: the bound is computed
    torch.manual_seed(1)
    exact = fused.FusedELBO(model).step(x)
    torch.manual_seed(1)
    lazy = fused.FusedELBO(model).step(x, exact=False)
    assert lazy is not None
    assert torch.equal(lazy, exact) or (torch.isnan(lazy) and torch.isnan(exact))


def test_fit_trains_bit_for_bit_as_with_the_exact_bound(monkeypatch):
    x = _data()
    cfg = TrainConfig(samples=800, batch_size=40, lr=0.05, eval_points=50, n_evals=3)
    lazy = _model()
    h_lazy = fit(lazy, x, cfg, show_progress=False)
    real = fused.FusedELBO.step
    monkeypatch.setattr(fused.FusedELBO, "step", lambda self, x, exact=True: real(self, x))
    exact = _model()
    h_exact = fit(exact, x, cfg, show_progress=False)
    assert h_lazy.train_bound == h_exact.train_bound
    assert all(
        torch.equal(a, b) for a, b in zip(lazy.parameters(), exact.parameters(), strict=True)
    )


def test_an_infinite_logit_on_the_fast_path_stops_fit_with_the_last_good_parameters():
    model = _model()
    with torch.no_grad():
        model.decoder.out.bias[0] = float("inf")  # −log p = inf wherever that pixel is 0
    before = [p.detach().clone() for p in model.parameters()]
    data = _data() * 0.0  # every pixel 0
    with pytest.raises(NonFiniteBoundError, match="became -inf at step 0"):
        fit(model, data, TrainConfig(samples=400, batch_size=40), show_progress=False)
    assert all(torch.equal(p.cpu(), q) for p, q in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize(
    "estimator,optimizer,fail_at",
    [
        ("B", "adagrad", 100),  # the fast path; the last copy at step 64, 35 steps replayed
        ("B", "adagrad", 64),  # the copy was due at the failing step: the one before is used
        ("A", "adagrad", 70),  # the general path (autograd)
        ("B", "adam", 1),  # Adam makes its state at its first step, after the first copy
        ("B", "adam", 130),
    ],
)
def test_a_non_finite_bound_mid_run_leaves_the_parameters_of_the_step_before_bit_for_bit(
    monkeypatch, estimator, optimizer, fail_at
):
    """fit() copies the parameters every 64 steps, not every step, and replays the steps since
    the copy: the model is left exactly as a run stopped one step before the failure."""
    x, M = _data(400), 20
    cfg = dict(batch_size=M, estimator=estimator, optimizer=optimizer, eval_points=50, n_evals=4)
    before = _model()
    if fail_at > 1:
        fit(before, x, TrainConfig(samples=(fail_at - 1) * M, **cfg), show_progress=False)

    calls = {"n": 0}
    if estimator == "B":
        real = fused.FusedELBO.step

        def step(self, batch, exact=True):
            out = real(self, batch, exact=True)
            calls["n"] += 1
            return torch.tensor(float("nan")) if calls["n"] == fail_at + 1 else out

        monkeypatch.setattr(fused.FusedELBO, "step", step)
    else:
        import aevb.train as train

        real = train._elbo

        def elbo(*args):
            out = real(*args)
            calls["n"] += 1
            return out * float("nan") if calls["n"] == fail_at + 1 else out

        monkeypatch.setattr(train, "_elbo", elbo)
    failed = _model()
    with pytest.raises(NonFiniteBoundError, match=f"at step {fail_at} "):
        fit(failed, x, TrainConfig(samples=400 * M, **cfg), show_progress=False)
    for p, q in zip(failed.parameters(), before.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_step_follows_a_replaced_parameter_gradient_or_minibatch_size():
    """The step keeps its buffers and views from one call to the next (FusedELBO's plan), but
    not past a parameter, a .grad or a storage replaced, or another minibatch size."""

    def fresh_grads(model, x):
        torch.manual_seed(1)
        bound = fused.FusedELBO(model).step(x)
        return bound, [p.grad.clone() for p in model.parameters()]

    model, x = _model(), _data(6)
    step = fused.FusedELBO(model)
    step.step(x)
    changes = [
        lambda m: m.zero_grad(set_to_none=True),  # new .grad tensors
        lambda m: setattr(m.decoder.out, "weight", torch.nn.Parameter(m.decoder.out.weight * 2)),
        lambda m: setattr(m.encoder.hidden.weight, "data", m.encoder.hidden.weight.data * 0.5),
        lambda m: None,  # a smaller minibatch: below
    ]
    for i, change in enumerate(changes):
        change(model)
        batch = x[: 6 - i]
        torch.manual_seed(1)
        got = step.step(batch)
        want, grads = fresh_grads(model, batch)
        assert torch.equal(got, want)
        for p, g in zip(model.parameters(), grads, strict=True):
            assert torch.equal(p.grad, g)


def test_an_encoder_output_past_the_certificate_computes_the_bound():
    """log σ² = 70 is finite (σ² = 2.5e30) but past the [-64, 64] the certificate accepts: the
    bound is computed (and finite), not assumed."""
    model, x = _model(), _data(6)
    with torch.no_grad():
        model.encoder.out.bias[3:].fill_(70.0)
    torch.manual_seed(1)
    exact = fused.FusedELBO(model).step(x)
    torch.manual_seed(1)
    lazy = fused.FusedELBO(model).step(x, exact=False)
    assert lazy is not None and torch.isfinite(lazy) and torch.equal(lazy, exact)
    assert fused._surely_finite(torch.zeros(6, 12), torch.full((6, 6), 64.0))
    assert not fused._surely_finite(torch.zeros(6, 12), torch.full((6, 6), -64.5))
    assert not fused._surely_finite(torch.full((6, 12), 2e35), torch.zeros(6, 6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("L", [1, 2])
def test_on_cuda_the_step_equals_elbo_b_with_autograd_and_certifies_once(L):
    """The plan's 0-dim CPU constants, the in-place tanh backward and the one-sync certificate
    (torch.stack(...).tolist() off the CPU) on a CUDA device."""
    model, x = _model().cuda(), _data(6).cuda()
    torch.manual_seed(1)
    bound = elbo_b(model, x, L).mean()
    model.zero_grad()
    (-bound).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    step = fused.FusedELBO(model, L)
    torch.manual_seed(1)
    got = step.step(x)
    assert float(got) == pytest.approx(float(bound.detach()), rel=1e-5)
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
    torch.manual_seed(1)
    assert step.step(x, exact=False) is None
    assert not fused._surely_finite(torch.full((6, 12), float("nan"), device="cuda"), x[:, :6])
