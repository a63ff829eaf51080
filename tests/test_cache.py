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
