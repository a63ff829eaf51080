"""torch's global generators around seeded blocks (aevb._random): a block seeded for its own
draws (an evaluation of the bound, a model's initial weights) leaves every global generator,
CPU and CUDA, as it found it. On a GPU, forking the CPU's alone let each evaluation inside
``fit`` re-seed the training noise (found by scripts/device-check.sh on an H200)."""

from pathlib import Path

import pytest
import torch

from aevb._random import SALT_VARIABLE, draw_salt, seeded, training_seed
from aevb.bound import dataset_bound
from aevb.cache import model_key
from aevb.models import ModelSpec, build_model
from aevb.train import TrainConfig, fit

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
PACKAGE = Path(__file__).resolve().parent.parent / "aevb"


def test_a_seeded_block_draws_under_its_seed_and_restores_the_cpu_generator():
    torch.manual_seed(123)
    expected_after = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected_after)  # as if the block had not run
    torch.manual_seed(7)
    assert torch.equal(inside, torch.rand(3))


def test_no_module_reseeds_torch_after_forking_the_cpu_generator_alone():
    """``fork_rng(devices=[])`` then ``torch.manual_seed`` re-seeds every CUDA generator and
    gives back only the CPU's: use ``seeded``."""
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "fork_rng(devices=[])" in path.read_text()
    ]
    assert offenders == []


@needs_cuda
def test_a_seeded_block_restores_the_cuda_generator():
    torch.cuda.manual_seed(11)
    before = torch.cuda.get_rng_state()
    with seeded(3):
        inside = torch.rand(4, device="cuda")
    assert torch.equal(torch.cuda.get_rng_state(), before)
    torch.cuda.manual_seed(3)
    assert torch.equal(inside, torch.rand(4, device="cuda"))


@needs_cuda
def test_an_evaluation_of_the_bound_leaves_the_cuda_generator_alone():
    model = build_model(ModelSpec(x_dim=12, z_dim=2, hidden=6), seed=0).cuda()
    x = torch.rand(30, 12, generator=torch.Generator().manual_seed(0)).cuda()
    torch.cuda.manual_seed(5)
    before = torch.cuda.get_rng_state()
    first = dataset_bound(model, x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert first == dataset_bound(model, x, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("device", ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
def test_the_evaluations_do_not_change_what_fit_trains_to(device):
    """The same run with 2 and with 6 evaluations of the bound: the same model."""
    x = torch.rand(200, 12, generator=torch.Generator().manual_seed(0))
    runs = []
    for n_evals in (2, 6):
        model = build_model(ModelSpec(x_dim=12, z_dim=2, hidden=6), seed=0)
        cfg = TrainConfig(samples=800, batch_size=40, n_evals=n_evals, eval_points=50)
        fit(model, x, cfg, device=device, show_progress=False)
        runs.append([p.detach().cpu() for p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------- the draw salt


@pytest.mark.parametrize("raw, salt", [(None, 0), ("", 0), ("0", 0), ("2", 2), (" 3 ", 3)])
def test_the_draw_salt_is_read_from_the_environment(monkeypatch, raw, salt):
    if raw is None:
        monkeypatch.delenv(SALT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(SALT_VARIABLE, raw)
    assert draw_salt() == salt
    assert training_seed(5) == (5 if salt == 0 else 5 + salt * 1_000_003)


@pytest.mark.parametrize("raw", ["-1", "1.5", "one", "1e3"])
def test_a_bad_draw_salt_is_a_clear_error_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(SALT_VARIABLE, raw)
    with pytest.raises(ValueError, match=r"AEVB_DRAW_SALT=.*whole number >= 0"):
        draw_salt()


def _salted_fit(monkeypatch, salt):
    if salt is None:
        monkeypatch.delenv(SALT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(SALT_VARIABLE, str(salt))
    x = torch.rand(300, 12, generator=torch.Generator().manual_seed(0))
    model = build_model(ModelSpec(12, 2, 8, "bernoulli"), seed=0)
    history = fit(model, x, TrainConfig(samples=600, batch_size=20, n_evals=2), show_progress=False)
    return [p.detach().clone() for p in model.parameters()], history


def test_a_salt_trains_on_other_draws_and_no_salt_trains_as_before(monkeypatch):
    unset, h_unset = _salted_fit(monkeypatch, None)
    zero, _ = _salted_fit(monkeypatch, 0)
    one, h_one = _salted_fit(monkeypatch, 1)
    one_again, _ = _salted_fit(monkeypatch, 1)
    assert all(torch.equal(a, b) for a, b in zip(unset, zero, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(one, one_again, strict=True))  # deterministic
    assert not any(torch.equal(a, b) for a, b in zip(unset, one, strict=True))
    # The evaluations keep their own draws: the same datapoints and noise, other parameters.
    assert h_one.samples == h_unset.samples and h_one.train_bound != h_unset.train_bound


def test_a_salted_build_has_cache_keys_of_its_own(monkeypatch):
    spec, config = ModelSpec(12, 2, 8, "bernoulli"), TrainConfig(samples=600)
    monkeypatch.delenv(SALT_VARIABLE, raising=False)
    published = model_key(spec, config, "data")
    monkeypatch.setenv(SALT_VARIABLE, "0")
    assert model_key(spec, config, "data") == published
    monkeypatch.setenv(SALT_VARIABLE, "1")
    salted = model_key(spec, config, "data")
    monkeypatch.setenv(SALT_VARIABLE, "2")
    assert len({published, salted, model_key(spec, config, "data")}) == 3
