"""The wake-sleep baseline: each phase trains its own network, the sleep phase fits q to the
true posterior on average over dreams, the history matches AEVB's, models are cached."""

import dataclasses

import pytest
import torch

from aevb.linear_gaussian import linear_gaussian_model
from aevb.models import ModelSpec, build_model
from aevb.train import History, TrainConfig, fit
from aevb.wake_sleep import fit_wake_sleep, sleep_loss, trained_wake_sleep, wake_loss


def _data(n=300, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(3, d, generator=g)
    idx = torch.randint(3, (n,), generator=g)
    return (protos[idx] * 0.8 + 0.1).clamp(0, 1)


def test_wake_trains_only_the_decoder_and_sleep_only_the_encoder():
    model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8))
    x = torch.bernoulli(_data(20))
    wake_loss(model, x).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    model.zero_grad(set_to_none=True)
    sleep_loss(model, 20, "sample", generator=torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())
    with pytest.raises(ValueError, match="'sample'"):
        sleep_loss(model, 4, "dream")


def test_sleep_phase_fits_q_to_the_true_posterior_of_a_linear_gaussian_model():
    # With p_θ fixed, the sleep phase minimises E_{p(x)} KL(p(z|x) || q(z|x)). For a linear
    # encoder with diagonal variance the minimiser has the exact posterior mean S Wᵀ(x − b)/σ²
    # and the marginal posterior variances diag(S) (not the 1/P_jj of the bound's optimum).
    torch.manual_seed(0)
    model = linear_gaussian_model(x_dim=4, z_dim=2, sigma=0.5, seed=1)
    for p in model.decoder.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.encoder.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [300], gamma=0.2)
    g = torch.Generator().manual_seed(1)
    for _ in range(500):
        opt.zero_grad()
        sleep_loss(model, 512, "sample", generator=g).backward()
        opt.step()
        sched.step()
    W, var = model.decoder.W, model.decoder.log_sigma.exp() ** 2
    S = torch.linalg.inv(torch.eye(2) + W.T @ W / var)
    assert torch.allclose(model.encoder.A, S @ W.T / var, atol=0.05)
    assert torch.allclose(model.encoder.log_var.exp(), torch.diagonal(S), rtol=0.1)


def test_history_has_aevb_format_and_schedule_and_the_bound_rises():
    x_all = _data(400)
    x, xt = x_all[:300], x_all[300:]
    cfg = TrainConfig(samples=3000, batch_size=50, lr=0.1, n_evals=5, eval_points=100)
    torch.manual_seed(0)
    ws = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=20))
    h_ws = fit_wake_sleep(ws, x, cfg, xt, show_progress=False)
    h_ae = fit(
        build_model(ModelSpec(x_dim=16, z_dim=2, hidden=20)), x, cfg, xt, show_progress=False
    )
    assert isinstance(h_ws, History)
    assert set(h_ws.to_dict()) == set(h_ae.to_dict())
    assert h_ws.samples == h_ae.samples  # the same evaluation points: both plot alike
    assert h_ws.train_bound[-1] > h_ws.train_bound[0] + 0.5  # the data allow about 1 nat
    assert h_ws.test_bound[-1] > h_ws.test_bound[0]


def test_deterministic_on_cpu_and_mean_dreams_and_gaussian_decoder_run():
    x = _data()
    runs = []
    for unrelated in (99, 100):
        torch.manual_seed(0)
        model = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8))
        torch.manual_seed(unrelated)  # unrelated global state must not matter
        h = fit_wake_sleep(
            model, x, TrainConfig(samples=600, batch_size=50, seed=3), show_progress=False
        )
        runs.append((h.train_bound, model.encoder.hidden.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])
    gauss = build_model(ModelSpec(x_dim=16, z_dim=2, hidden=8, decoder="gaussian"))
    cfg = TrainConfig(samples=300, batch_size=50, binarize=None, weight_prior=True)
    h = fit_wake_sleep(gauss, x, cfg, sleep="mean", show_progress=False)
    assert len(h.samples) >= 2
    with pytest.raises(ValueError, match="sleep="):
        fit_wake_sleep(gauss, x, cfg, sleep="dream")


def test_trained_wake_sleep_caches_and_recovers_from_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AEVB_CACHE", str(tmp_path))
    x = _data()
    spec = ModelSpec(x_dim=16, z_dim=2, hidden=8)
    cfg = TrainConfig(samples=300, batch_size=50, n_evals=2, eval_points=50)
    m1, h1 = trained_wake_sleep(spec, cfg, x, verbose=False)
    files = list((tmp_path / "models").glob("*.pt"))
    assert len(files) == 1
    m2, h2 = trained_wake_sleep(spec, cfg, x, verbose=False)
    assert h1.samples == h2.samples and h1.train_bound == h2.train_bound
    assert all(
        torch.equal(a, b)
        for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True)
    )
    # another sleep input or config is another model
    trained_wake_sleep(spec, cfg, x, sleep="mean", verbose=False)
    trained_wake_sleep(spec, dataclasses.replace(cfg, seed=1), x, verbose=False)
    assert len(list((tmp_path / "models").glob("*.pt"))) == 3
    files[0].write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="training again"):
        _, h3 = trained_wake_sleep(spec, cfg, x, verbose=False)
    assert h3.train_bound == h1.train_bound
    assert list((tmp_path / "models").glob("*.corrupt"))
