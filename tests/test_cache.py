"""Shared models: trained once, loaded after; a corrupted cache file is set aside, not used."""

import torch

from aevb.cache import model_key, trained_model
from aevb.models import ModelSpec
from aevb.train import TrainConfig


def _setup(tmp_path, monkeypatch):
    monkeypatch.setenv("AEVB_CACHE", str(tmp_path))
    x = torch.rand(200, 12, generator=torch.Generator().manual_seed(0))
    return ModelSpec(x_dim=12, z_dim=2, hidden=6), TrainConfig(samples=400, batch_size=50), x


def test_second_call_loads_the_cached_model(tmp_path, monkeypatch, capsys):
    spec, cfg, x = _setup(tmp_path, monkeypatch)
    m1, h1 = trained_model(spec, cfg, x)
    assert "training model" in capsys.readouterr().out
    m2, h2 = trained_model(spec, cfg, x)
    assert "loaded cached model" in capsys.readouterr().out
    assert h1.samples == h2.samples
    assert torch.equal(m1.encoder.hidden.weight, m2.encoder.hidden.weight)
    assert len(list((tmp_path / "models").glob("*.pt"))) == 1


def test_key_depends_on_spec_config_and_data():
    spec, cfg = ModelSpec(x_dim=12, z_dim=2), TrainConfig(samples=400)
    k = model_key(spec, cfg, "data")
    assert k != model_key(ModelSpec(x_dim=12, z_dim=3), cfg, "data")
    assert k != model_key(spec, TrainConfig(samples=401), "data")
    assert k != model_key(spec, cfg, "other data")


def test_corrupted_cache_file_is_set_aside_and_retrained(tmp_path, monkeypatch):
    spec, cfg, x = _setup(tmp_path, monkeypatch)
    trained_model(spec, cfg, x, verbose=False)
    (path,) = (tmp_path / "models").glob("*.pt")
    path.write_bytes(b"garbage")
    import pytest

    with pytest.warns(UserWarning, match="training again"):
        model, _ = trained_model(spec, cfg, x, verbose=False)
    assert path.with_suffix(".corrupt").read_bytes() == b"garbage"  # kept, not lost
    assert path.exists()


def test_same_key_same_model_whatever_the_global_random_state(tmp_path, monkeypatch):
    """The cache key promises one training run: the initial weights come from config.seed,
    not from whatever the caller drew before, and the caller's random state is left alone."""
    spec, cfg, x = _setup(tmp_path, monkeypatch)
    torch.manual_seed(1)
    m1, h1 = trained_model(spec, cfg, x, verbose=False)
    torch.manual_seed(2)
    torch.rand(17)
    state = torch.get_rng_state()
    m2, h2 = trained_model(spec, cfg, x, retrain=True, verbose=False)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's state untouched
    assert h1.train_bound == h2.train_bound
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other, _ = trained_model(spec, TrainConfig(samples=400, batch_size=50, seed=1), x)
    assert not torch.equal(other.encoder.hidden.weight, m1.encoder.hidden.weight)


_TRAIN_IN_A_NEW_PROCESS = """
import sys, torch
from aevb.cache import trained_model
from aevb.models import ModelSpec
from aevb.train import TrainConfig
torch.manual_seed(int(sys.argv[1]))
x = torch.rand(200, 12, generator=torch.Generator().manual_seed(0))
spec, cfg = ModelSpec(x_dim=12, z_dim=2, hidden=6), TrainConfig(samples=400, batch_size=50)
model, history = trained_model(spec, cfg, x, retrain=True, verbose=False)
print(repr(history.train_bound[-1]), float(sum(p.double().sum() for p in model.parameters())))
"""


def test_training_is_bitwise_reproducible_across_processes(tmp_path):
    """Two fresh interpreters (different global seeds, one thread each) train the same key to
    the same bits: the book's cached models do not depend on which chapter trained them."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "AEVB_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.run(
            [sys.executable, "-c", _TRAIN_IN_A_NEW_PROCESS, str(seed)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (3, 4)
    ]
    assert runs[0] == runs[1], runs
