"""Algorithm 1: the bound improves, runs are deterministic, failures keep good parameters."""

import pytest
import torch

import aevb.train as train
from aevb.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aevb.models import ModelSpec, build_model
from aevb.train import History, NonFiniteBoundError, TrainConfig, eval_schedule, fit, load_model


def _data(n=300, d=16, seed=0):
    """Three binary prototypes with 5% of pixels flipped: a bound near -5 nats is reachable."""
    protos = torch.bernoulli(torch.full((3, d), 0.5), generator=torch.Generator().manual_seed(42))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(3, (n,), generator=g)
    flip = torch.bernoulli(torch.full((n, d), 0.05), generator=g)
    return (protos[idx] - flip).abs()


def test_training_improves_the_bound_on_train_and_test():
    x, xt = _data(), _data(100, seed=1)
    model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=20))
    hist = fit(model, x, TrainConfig(samples=6000, batch_size=50, lr=0.1), xt, show_progress=False)
    assert hist.samples[-1] == 6000
    assert hist.train_bound[-1] > hist.train_bound[0] + 1.0
    assert hist.test_bound[-1] > hist.test_bound[0] + 1.0
    assert hist.samples == sorted(hist.samples)


def test_training_is_deterministic_on_cpu():
    x = _data()
    runs = []
    for unrelated in (123, 456):
        torch.manual_seed(0)
        model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8))
        torch.manual_seed(unrelated)  # global RNG state before fit must not matter
        hist = fit(model, x, TrainConfig(samples=1000, batch_size=50, seed=7), show_progress=False)
        runs.append((hist.train_bound, model.encoder.hidden.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize(
    "estimator,optimizer,binarize", [("A", "adam", "static"), ("B", "adagrad", None)]
)
def test_options_run(estimator, optimizer, binarize):
    x = _data()
    model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8))
    cfg = TrainConfig(
        samples=500,
        batch_size=50,
        estimator=estimator,
        optimizer=optimizer,
        lr=0.01,
        binarize=binarize,
        weight_prior=True,
        L=2,
    )
    hist = fit(model, x, cfg, show_progress=False)
    assert len(hist.samples) >= 2


def test_eval_schedule_is_log_spaced_and_ends_at_total():
    s = eval_schedule(100_000, 100, 8)
    assert s[0] == 100 and s[-1] == 100_000
    ratios = [b / a for a, b in zip(s, s[1:], strict=False)]
    assert max(ratios) < 3.5


def test_non_finite_bound_stops_naming_the_step_and_keeps_last_good_parameters():
    x = _data()
    model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8))
    calls = {"n": 0}
    original = model.decoder.forward

    def sabotaged(z):
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th training step's forward pass
            with torch.no_grad():
                model.decoder.out.bias.fill_(float("nan"))
        return original(z)

    model.decoder.forward = sabotaged
    cfg = TrainConfig(samples=10_000, batch_size=50, n_evals=2, eval_points=10)
    with pytest.raises(NonFiniteBoundError, match=r"at step \d+ \(\d+ samples seen\)"):
        fit(model, x, cfg, show_progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_data_and_config_are_refused_with_the_fix():
    model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8))
    with pytest.raises(ValueError, match="divide by 255"):
        fit(model, _data() * 255, TrainConfig(samples=100), show_progress=False)
    with pytest.raises(ValueError, match="expected \\(batch, 16\\)"):
        fit(model, torch.rand(10, 4, 4), TrainConfig(samples=100), show_progress=False)
    with pytest.raises(ValueError, match="'adagrad' or 'adam'"):
        TrainConfig(samples=100, optimizer="sgd")
    with pytest.raises(ValueError, match="'dynamic', 'static' or None"):
        TrainConfig(samples=100, binarize="yes")
    with pytest.raises(ValueError, match=">= 1"):
        TrainConfig(samples=0)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    x = _data()
    model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8))
    path = tmp_path / "m.pt"
    hist = fit(
        model, x, TrainConfig(samples=500, batch_size=50), checkpoint=str(path), show_progress=False
    )
    again, hist2, cfg = load_model(str(path))
    assert isinstance(hist2, History) and hist2.samples == hist.samples
    assert cfg.samples == 500
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a.cpu(), b)
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no temporary file left behind


def test_corrupted_or_foreign_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="delete it"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an aevb checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="train the model first"):
        load_checkpoint(tmp_path / "missing.pt")


class Evil:
    """Not a tensor, number, string or container: weights_only must refuse it."""


def test_checkpoints_refuse_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "obj": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    ok = save_checkpoint(tmp_path / "ok.pt", {"x": torch.ones(1)})
    assert torch.equal(load_checkpoint(ok)["x"], torch.ones(1))


@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_the_fused_optimizer_is_used_where_torch_has_it(optimizer, monkeypatch):
    """The CPU has the fused kernels; where a device lacks one, the per-tensor update is used
    (same update, slower) instead of failing at the first step."""
    params = list(build_model(ModelSpec(16, 2, hidden=8)).parameters())
    config = TrainConfig(samples=100, optimizer=optimizer)
    kind = torch.optim.Adagrad if optimizer == "adagrad" else torch.optim.Adam
    assert train.fused_step_available(kind, torch.device("cpu"))
    assert train.make_optimizer(params, config).defaults["fused"] is True
    assert not train.fused_step_available(kind, torch.device("meta"))
    assert not train.fused_step_available(_WithoutFusedKernel, torch.device("cpu"))
    monkeypatch.setattr(train, "fused_step_available", lambda kind, device: False)
    fallback = train.make_optimizer(params, config)
    assert type(fallback) is kind and not fallback.defaults["fused"]


class _WithoutFusedKernel(torch.optim.Adagrad):
    """What an older torch does on a device without the fused kernel."""

    def step(self, closure=None):
        if self.defaults["fused"]:
            raise RuntimeError("`fused=True` requires all the params to be floating point ...")
        return super().step(closure)


def test_a_capturable_optimizer_is_adam_on_cuda_only():
    """A step captured in a CUDA graph needs Adam's capturable form; Adagrad's fused kernel
    needs nothing, and off CUDA the option is refused with the fix."""
    params = list(build_model(ModelSpec(16, 2, hidden=8)).parameters())
    with pytest.raises(ValueError, match="capturable=False"):
        train.make_optimizer(params, TrainConfig(samples=100, optimizer="adam"), capturable=True)
    meta = [torch.zeros(3, device="meta", requires_grad=True)]
    with pytest.raises(ValueError, match="not on meta"):
        train.make_optimizer(meta, TrainConfig(samples=100), capturable=True)
    adam = train.make_optimizer(params, TrainConfig(samples=100, optimizer="adam"))
    assert adam.defaults["capturable"] is False


def test_dynamic_binarization_draws_each_pixel_with_its_grey_level():
    levels = torch.tensor([0.0, 1 / 255, 0.25, 0.5, 0.9, 254 / 255, 1.0])
    x = levels.repeat(100_001, 1)
    g = torch.Generator().manual_seed(0)
    b = train.binarize_batch(x, g)
    assert b.shape == x.shape and b.dtype == torch.float32
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    p = b.mean(0)
    assert p[0] == 0.0 and p[-1] == 1.0  # u in (0, 1): never below 0, always below 1
    sd = (levels * (1 - levels) / x.shape[0]).sqrt()
    assert ((p - levels).abs() <= 5 * sd + 1e-12).all(), (p, levels)
    # pixels are independent: neighbours of grey level 0.5 agree half the time
    half = train.binarize_batch(torch.full((2000, 784), 0.5), g)
    agree = (half[:, :-1] == half[:, 1:]).float().mean()
    assert abs(float(agree) - 0.5) < 0.005
    # 16 bits per pixel, four pixels per 64-bit draw: a size that is not a multiple of four,
    # and every pixel of a draw its own
    odd = train.binarize_batch(torch.full((3, 7), 0.5), torch.Generator().manual_seed(1))
    assert odd.shape == (3, 7) and set(odd.unique().tolist()) <= {0.0, 1.0}
    # the same generator state gives the same draw
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(train.binarize_batch(x[:50], g1), train.binarize_batch(x[:50], g2))


def _stepped(device, n_steps, fast, **options):
    torch.manual_seed(0)
    model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8)).to(device)
    params = list(model.parameters())
    opt = torch.optim.Adagrad(params, lr=0.05, **options)
    step = train.optimizer_step(opt) if fast else opt.step
    g = torch.Generator().manual_seed(1)
    for _ in range(n_steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g).to(device)
        step()
    return params, opt


_on_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=_on_cuda)])
@pytest.mark.parametrize("options", [{"fused": True}, {"fused": True, "lr_decay": 0.01}])
def test_the_fast_optimizer_step_is_adagrad_step_bit_for_bit(options, device):
    if not train.fused_step_available(torch.optim.Adagrad, torch.device(device)):
        pytest.skip(f"this torch has no fused Adagrad on {device}")
    fast, opt_fast = _stepped(device, 5, True, **options)
    slow, opt_slow = _stepped(device, 5, False, **options)
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(opt_fast.state.values(), opt_slow.state.values(), strict=True):
        assert torch.equal(a["sum"], b["sum"]) and torch.equal(a["step"], b["step"])
    assert float(next(iter(opt_fast.state.values()))["step"]) == 5


def test_the_fast_optimizer_step_is_used_only_for_a_plain_fused_adagrad():
    params = [torch.nn.Parameter(torch.zeros(3))]
    plain = torch.optim.Adagrad(params, lr=0.1, fused=True)
    assert train.optimizer_step(plain) != plain.step
    for opt in (
        torch.optim.Adagrad(params, lr=0.1),  # not fused
        torch.optim.Adam(params, lr=0.1, fused=True),
        torch.optim.Adagrad([{"params": params}, {"params": [torch.nn.Parameter(torch.ones(2))]}]),
    ):
        assert train.optimizer_step(opt) == opt.step
    hooked = torch.optim.Adagrad(params, lr=0.1, fused=True)
    calls = []
    hooked.register_step_post_hook(lambda *a: calls.append(1))
    assert train.optimizer_step(hooked) == hooked.step
    hooked.step()
    assert calls == [1]


def test_the_fast_optimizer_step_skips_a_parameter_without_a_gradient_as_adagrad_does():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.Adagrad([a, b], lr=0.1, fused=True)
    a.grad = torch.ones(2)
    train.optimizer_step(opt)()
    assert torch.equal(b, torch.ones(2)) and (a < 1).all()
    assert float(opt.state[a]["step"]) == 1 and float(opt.state[b]["step"]) == 0


def test_the_fast_optimizer_step_keeps_the_step_counts_per_parameter(tmp_path):
    """optimizer_step keeps the step counts in one tensor, a view of it per parameter in the
    optimizer's state: Adagrad's own step, a state_dict saved and loaded (weights_only=True),
    and a parameter without a gradient still count each parameter's steps."""
    params, opt = _stepped("cpu", 3, True, fused=True)
    counts = [float(opt.state[p]["step"]) for p in params]
    assert counts == [3.0] * len(params)
    params[0].grad = None
    opt.step()  # torch's own step: counts the parameters with a gradient
    assert float(opt.state[params[0]]["step"]) == 3 and float(opt.state[params[1]]["step"]) == 4
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    loaded = torch.optim.Adagrad(params, lr=0.05, fused=True)
    loaded.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    assert [float(loaded.state[p]["step"]) for p in params] == [3.0] + [4.0] * (len(params) - 1)
    for p in params:
        p.grad = torch.ones_like(p)
    train.optimizer_step(loaded)()
    assert [float(loaded.state[p]["step"]) for p in params] == [4.0] + [5.0] * (len(params) - 1)


@_on_cuda
def test_dynamic_binarization_on_a_cuda_generator():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0], device="cuda").repeat(50_000, 1)
    g = train.binarize_generator(torch.device("cuda"), 0, torch.Generator())
    b = train.binarize_batch(x, g)
    assert b.device.type == "cuda" and b.dtype == torch.float32
    p = b.mean(0).cpu()
    assert p[0] == 0.0 and p[-1] == 1.0
    assert abs(float(p[1]) - 0.25) < 0.01 and abs(float(p[2]) - 0.5) < 0.01
