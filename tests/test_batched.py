"""Several VAEs in one step (aevb.batched): equal to separate fit() runs on a tiny problem."""

import warnings

import pytest
import torch

import aevb.batched
from aevb.batched import StackedVAE, check_batchable, figure2_models, fit_batched
from aevb.models import GaussianMLPDecoder, ModelSpec, build_model
from aevb.train import NonFiniteBoundError, TrainConfig, fit


def _data(n=200, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(3, d, generator=g)
    return (protos[torch.randint(3, (n,), generator=g)] * 0.8 + 0.1).clamp(0, 1)


def _models(z_dims, decoder="bernoulli", seed=0):
    torch.manual_seed(seed)
    return [build_model(ModelSpec(x_dim=12, z_dim=z, hidden=6, decoder=decoder)) for z in z_dims]


@pytest.mark.parametrize(
    "decoder,binarize,L",
    [("bernoulli", "dynamic", 1), ("bernoulli", "static", 2), ("gaussian", None, 1)],
)
def test_batched_training_equals_separate_fits(decoder, binarize, L):
    x, xt = _data(), _data(60, seed=1)
    cfg = TrainConfig(
        samples=600, batch_size=40, lr=0.05, binarize=binarize, L=L, eval_points=50, n_evals=4
    )
    z_dims = (1, 2, 4)
    separate = _models(z_dims, decoder)
    together = _models(z_dims, decoder)
    hists = [fit(m, x, cfg, xt, show_progress=False) for m in separate]
    batched = fit_batched(together, x, cfg, xt, show_progress=False)
    for a, b, ha, hb in zip(separate, together, hists, batched, strict=True):
        assert ha.samples == hb.samples
        assert ha.train_bound == pytest.approx(hb.train_bound, rel=1e-4)
        assert ha.test_bound == pytest.approx(hb.test_bound, rel=1e-4)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_stack_round_trip_keeps_weights_and_zero_padding():
    models = _models((1, 3))
    stack = StackedVAE(models)
    assert stack.W2.shape == (2, 6, 6) and float(stack.W2[0, 1:3].detach().abs().sum()) == 0.0
    copies = _models((1, 3), seed=1)
    stack.store_into(copies)
    for a, b in zip(models, copies, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)


def test_models_that_cannot_share_a_step_are_refused_with_the_fix():
    cfg = TrainConfig(samples=100)
    mixed = [build_model(ModelSpec(12, 2, hidden=6)), build_model(ModelSpec(12, 2, hidden=7))]
    with pytest.raises(ValueError, match="only z_dim may differ"):
        check_batchable(mixed, cfg)
    with pytest.raises(ValueError, match="estimator A"):
        check_batchable(_models((2,)), TrainConfig(samples=100, estimator="A"))
    odd = _models((2,))[0]
    odd.decoder = GaussianMLPDecoder(2, 12, 6)
    odd.decoder.forward = lambda z: None
    with pytest.raises(ValueError, match="unmodified"):
        check_batchable([odd], cfg)


def test_non_finite_bound_names_the_model_and_keeps_good_parameters():
    models = _models((1, 2))
    with torch.no_grad():
        models[1].encoder.out.bias[2:].fill_(200.0)  # log σ² = 200: σ² overflows
    before = [p.detach().clone() for p in models[1].parameters()]
    with pytest.raises(NonFiniteBoundError, match=r"model\(s\) \[1\]"):
        fit_batched(models, _data(), TrainConfig(samples=400, batch_size=40), show_progress=False)
    for p, q in zip(models[1].parameters(), before, strict=True):  # trained on any device
        assert torch.equal(p.cpu(), q)


def test_figure2_models_follow_the_paper():
    mnist = figure2_models("mnist")
    assert [m.spec.z_dim for m in mnist] == [3, 5, 10, 20, 200]
    assert {(m.spec.x_dim, m.spec.hidden) for m in mnist} == {(784, 500)}
    frey = figure2_models("frey-face", z_dims=(2,))
    assert frey[0].spec.decoder == "gaussian" and frey[0].spec.x_dim == 560


class _RecordedStep:
    """A CPU stand-in for a CUDA graph: capture records the step without running it, replay
    runs it again (writing the gradients afresh, as a replayed graph does)."""

    instances: list = []

    def __init__(self, device):
        self.fn, self.captures, self.replays = None, 0, 0
        _RecordedStep.instances.append(self)

    def capture(self, fn):
        self.fn, self.captures = fn, self.captures + 1

    def replay(self):
        self.replays += 1
        self.fn.__self__.optimizer.zero_grad(set_to_none=True)
        self.fn()


class _FailingCapture(_RecordedStep):
    def capture(self, fn):
        raise RuntimeError("operation not permitted when stream is capturing")


def _train_pair(monkeypatch, factory):
    x, cfg = _data(), TrainConfig(samples=400, batch_size=40, lr=0.05, eval_points=50, n_evals=3)
    eager, graphed = _models((1, 3)), _models((1, 3))
    h_eager = fit_batched(eager, x, cfg, cuda_graph=False, show_progress=False)
    monkeypatch.setattr(aevb.batched, "_graph_factory", factory)
    _RecordedStep.instances.clear()
    h_graph = fit_batched(graphed, x, cfg, cuda_graph=True, show_progress=False)
    for a, b, ha, hb in zip(eager, graphed, h_eager, h_graph, strict=True):
        assert ha.train_bound == hb.train_bound and ha.samples == hb.samples
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)
    return _RecordedStep.instances


def test_a_captured_step_replayed_trains_exactly_as_the_eager_step(monkeypatch):
    """The step on fixed buffers: warm-up steps, one capture, then replays; same models."""
    (graph,) = _train_pair(monkeypatch, _RecordedStep)
    assert graph.captures == 1 and graph.replays == 400 // 40 - 3  # 3 warm-up steps


def test_a_failed_capture_warns_and_trains_on_without_the_graph(monkeypatch):
    with pytest.warns(RuntimeWarning, match="capture failed .* without the graph"):
        (graph,) = _train_pair(monkeypatch, _FailingCapture)
    assert graph.replays == 0


def test_cuda_graph_off_cuda_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="cuda_graph=False"):
        fit_batched(
            _models((1,)),
            _data(),
            TrainConfig(samples=80, batch_size=40),
            device="cpu",
            cuda_graph=True,
            show_progress=False,
        )


def test_non_finite_bound_later_in_training_restores_the_last_finite_parameters():
    """With a step size that diverges, the bound turns non-finite at step 3 (from the
    parameters after step 2): the models get back those after step 1, whose bound was finite."""
    x = _data()

    def cfg(samples):
        return TrainConfig(samples=samples, batch_size=40, lr=20.0, n_evals=2, eval_points=40)

    models = _models((2,))
    # Checked at every step on any device (a GPU's default is every 50th).
    with pytest.raises(NonFiniteBoundError, match="by step 3 "):
        fit_batched(models, x, cfg(400), check_every=1, show_progress=False)
    one_step = _models((2,))
    fit_batched(one_step, x, cfg(40), check_every=1, show_progress=False)
    for p, q in zip(models[0].parameters(), one_step[0].parameters(), strict=True):
        assert torch.equal(p, q)


DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_the_optimizer_is_made_capturable_only_for_a_cuda_graph_on_cuda(
    optimizer, device, monkeypatch
):
    asked = []
    real = aevb.batched.make_optimizer

    def spy(params, config, *, capturable=False):
        asked.append(capturable)
        return real(params, config, capturable=capturable)

    monkeypatch.setattr(aevb.batched, "make_optimizer", spy)
    if device == "cpu":  # on the CPU a stand-in graph runs the step; on CUDA the real one
        monkeypatch.setattr(aevb.batched, "_graph_factory", _RecordedStep)
    cfg = TrainConfig(samples=200, batch_size=40, optimizer=optimizer)
    for graph in (False, True):
        fit_batched(
            _models((1, 3)), _data(), cfg, device=device, cuda_graph=graph, show_progress=False
        )
    assert asked == [False, device == "cuda"]


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_on_cuda_the_captured_graph_trains_as_the_eager_step(optimizer):
    """The real CUDA graph (scripts/device-check.sh runs this on a GPU): captured without a
    warning, replayed for every step after the warm-up, and the same models as eager steps."""
    x = _data()
    cfg = TrainConfig(samples=800, batch_size=40, optimizer=optimizer, eval_points=50, n_evals=3)
    eager, graphed = _models((1, 3)), _models((1, 3))
    h_eager = fit_batched(eager, x, cfg, device="cuda", cuda_graph=False, show_progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h_graph = fit_batched(graphed, x, cfg, device="cuda", cuda_graph=True, show_progress=False)
    # No failed capture, and no warning about an uncaptured capturable optimizer (warm-up).
    assert not [str(w.message) for w in caught if "captur" in str(w.message)]
    for a, b, ha, hb in zip(eager, graphed, h_eager, h_graph, strict=True):
        assert ha.samples == hb.samples
        assert ha.train_bound == pytest.approx(hb.train_bound, rel=1e-5, abs=1e-4)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
