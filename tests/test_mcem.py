"""Monte Carlo EM with HMC (Appendix E): it trains the decoder only, tunes the HMC step to the
target acceptance, improves log p(x, z), repeats under a seed and caches its models."""

import pytest
import torch

from aevb.marginal_hmc import hmc_marginal
from aevb.mcem import MCEMHistory, fit_mcem, trained_mcem
from aevb.models import ModelSpec, build_model
from aevb.train import NonFiniteBoundError, TrainConfig


def _data(n=200, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(3, d, generator=g)
    idx = torch.randint(3, (n,), generator=g)
    return (protos[idx] * 0.8 + 0.1).clamp(0, 1)


def _model(seed=0, hidden=16):
    torch.manual_seed(seed)
    return build_model(ModelSpec(x_dim=16, z_dim=2, hidden=hidden))


def test_mcem_trains_the_decoder_only_and_improves_the_complete_data_likelihood():
    x = _data()
    model = _model()
    enc_before = [p.detach().clone() for p in model.encoder.parameters()]
    dec_before = [p.detach().clone() for p in model.decoder.parameters()]
    cfg = TrainConfig(samples=2500, batch_size=50, lr=0.05, n_evals=6)
    h = fit_mcem(model, x, cfg, init_step=0.5, show_progress=False)
    assert isinstance(h, MCEMHistory) and h.samples[-1] == 2500
    model.cpu()  # trained on the default device (a GPU, where there is one)
    assert all(
        torch.equal(a, b) for a, b in zip(enc_before, model.encoder.parameters(), strict=True)
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(dec_before, model.decoder.parameters(), strict=True)
    )
    assert h.log_joint[-1] > h.log_joint[0]
    # The step size is tuned so that the acceptance rate approaches the paper's ~90%.
    assert 0.75 < h.acceptance[-1] < 0.99
    assert h.step_size[-1] != pytest.approx(0.5)


def test_mcem_raises_the_marginal_likelihood_estimated_by_appendix_d():
    x = torch.bernoulli(_data(100, seed=1), generator=torch.Generator().manual_seed(0))
    model = _model(seed=1)
    gen = torch.Generator().manual_seed(5)
    before = hmc_marginal(model, x[:20], 10, warmup=10, generator=gen).log_px.mean()
    fit_mcem(
        model,
        x,
        TrainConfig(samples=3000, batch_size=50, lr=0.05, binarize="static"),
        show_progress=False,
    )
    gen = torch.Generator().manual_seed(5)
    model.cpu()  # trained on the default device: back beside the data
    after = hmc_marginal(model, x[:20], 10, warmup=10, generator=gen).log_px.mean()
    assert after > before + 1.0


def test_mcem_is_deterministic_and_its_history_round_trips():
    x = _data()
    runs = []
    for unrelated in (77, 78):
        model = _model()
        torch.manual_seed(unrelated)  # unrelated global state must not matter
        h = fit_mcem(model, x, TrainConfig(samples=400, batch_size=50, seed=2), show_progress=False)
        runs.append((h, model.decoder.out.weight.detach().clone()))
    assert runs[0][0].log_joint == runs[1][0].log_joint
    assert torch.equal(runs[0][1], runs[1][1])
    h = runs[0][0]
    assert MCEMHistory.from_dict(h.to_dict()) == h


def test_mcem_refuses_bad_settings_and_stops_on_non_finite_likelihood():
    x = _data()
    model = _model()
    with pytest.raises(ValueError, match="n_leapfrog"):
        fit_mcem(model, x, TrainConfig(samples=100), n_leapfrog=0, show_progress=False)
    with torch.no_grad():
        model.decoder.out.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteBoundError, match="step 0"):
        fit_mcem(model, x, TrainConfig(samples=100, batch_size=50), show_progress=False)


def test_trained_mcem_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("AEVB_CACHE", str(tmp_path))
    x = _data()
    spec = ModelSpec(x_dim=16, z_dim=2, hidden=8)
    cfg = TrainConfig(samples=200, batch_size=50, n_evals=2)
    m1, h1 = trained_mcem(spec, cfg, x, verbose=False)
    m2, h2 = trained_mcem(spec, cfg, x, verbose=False)
    assert h1.log_joint == h2.log_joint
    assert torch.equal(m1.decoder.out.weight, m2.decoder.out.weight)
    trained_mcem(spec, cfg, x, updates_per_sample=2, verbose=False)
    assert len(list((tmp_path / "models").glob("*.pt"))) == 2
