"""The book's standard models: shared configurations, the continuous data set and its model."""

import inspect
import math

import pytest
import torch

from aevb import data, zoo
from aevb.profile import PROFILES, budget


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AEVB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_data(monkeypatch):
    """data.load with a small fake Fashion-MNIST and (unless told) no Frey faces."""
    state = {"frey": False, "calls": []}

    def load(name, split="train", **kwargs):
        state["calls"].append(name)
        if name == "frey-face" and not state["frey"]:
            raise data.DataError("could not download frey_rawface.mat: offline. Put it at ...")
        n, shape = (100, (28, 20)) if name == "frey-face" else (100, (28, 28))
        gen = torch.Generator().manual_seed(len(split))
        levels = torch.randint(0, 256, (n, shape[0] * shape[1]), generator=gen)
        return data.DataSet(name, split, levels.float() / 255, None, shape, f"fake {name}")

    monkeypatch.setattr(data, "load", load)
    zoo._continuous.cache_clear()
    yield state
    zoo._continuous.cache_clear()


def test_standard_latent_dimensions():
    assert zoo.MNIST_Z_DIMS == (2, 5, 10, 20)
    assert zoo.MAIN_Z_DIM in zoo.MNIST_Z_DIMS


def test_mnist_vae_keeps_its_signature():
    params = inspect.signature(zoo.mnist_vae).parameters
    assert list(params)[:4] == ["z_dim", "hidden", "samples", "seed"]
    assert [params[k].default for k in ("z_dim", "hidden", "samples", "seed")] == [20, 500, None, 0]
    assert params["device"].kind is inspect.Parameter.KEYWORD_ONLY
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize("profile", PROFILES)
def test_standard_models_table(profile):
    rows = zoo.standard_models(profile)
    assert len({r.name for r in rows}) == len(rows)
    for r in rows:
        assert r.samples == budget(r.budget_key, profile) > 0
    main = next(r for r in rows if r.name == "mnist_vae(z_dim=20)")
    assert {"05", "08"} <= set(main.chapters)  # chapter 8 reuses chapter 5's model
    figure5 = [r for r in rows if r.data == "mnist"]
    assert tuple(r.z_dim for r in figure5) == zoo.MNIST_Z_DIMS
    if profile != "book":  # smoke and paper: one training length for all of Figure 5
        assert len({r.samples for r in figure5}) == 1
    assert {r.hidden for r in rows if r.data == "continuous"} == {200}


def test_dequantize_stays_in_the_pixel_bin_and_is_seeded():
    levels = torch.arange(256, dtype=torch.float32).repeat(3).reshape(3, 256)
    ds = data.DataSet("x", "train", levels / 255, None, (16, 16), "fake")
    a = zoo.dequantize(ds, seed=1)
    assert torch.all((a.images > 0) & (a.images < 1))
    assert torch.equal(torch.floor(a.images * 256), levels)  # level k lands in [k, k+1)/256
    assert torch.equal(a.images, zoo.dequantize(ds, seed=1).images)
    assert not torch.equal(a.images, zoo.dequantize(ds, seed=2).images)
    assert "dequantized" in a.source and ds.images.equal(levels / 255)  # input untouched


def test_continuous_data_falls_back_to_fashion_mnist(fake_data, capsys):
    ds = zoo.continuous_data("train")
    assert ds.name == "fashion-mnist" and ds.image_shape == (28, 28)
    assert "nearest available continuous data set" in capsys.readouterr().out
    assert fake_data["calls"][:2] == ["frey-face", "fashion-mnist"]
    ds.images.zero_()  # each call returns fresh tensors
    assert zoo.continuous_data("train", verbose=False).images.max() > 0
    assert fake_data["calls"].count("fashion-mnist") == 1  # loaded once per process


def test_continuous_data_uses_frey_faces_when_available(fake_data, capsys):
    fake_data["frey"] = True
    ds = zoo.continuous_data("test")
    assert ds.name == "frey-face" and ds.image_shape == (28, 20)
    assert "as in the paper" in capsys.readouterr().out


def test_continuous_vae_trains_finite_and_is_cached(fake_data, tmp_cache, capsys):
    model, history = zoo.continuous_vae(z_dim=2, samples=200, eval_points=40)
    assert model.spec.decoder == "gaussian" and model.spec.hidden == zoo.CONTINUOUS_HIDDEN
    assert model.spec.x_dim == 784 and history.samples[-1] == 200
    assert all(math.isfinite(b) for b in history.train_bound + history.test_bound)
    assert "training model" in capsys.readouterr().out
    again, history2 = zoo.continuous_vae(z_dim=2, samples=200, eval_points=40)
    assert "loaded cached model" in capsys.readouterr().out
    assert history2.train_bound == history.train_bound
    assert torch.equal(again.decoder.out.weight, model.decoder.out.weight)


def test_mnist_vae_accepts_a_device_and_caches(tmp_cache, capsys):
    model, history = zoo.mnist_vae(z_dim=2, hidden=8, samples=200, device="cpu", eval_points=50)
    assert model.spec.z_dim == 2 and history.samples[-1] == 200
    zoo.mnist_vae(z_dim=2, hidden=8, samples=200, eval_points=50)  # device is not in the key
    assert "loaded cached model" in capsys.readouterr().out
    assert len(list((tmp_cache / "models").glob("*.pt"))) == 1


def test_mnist_latent_vae_shares_the_main_model(monkeypatch):
    calls = []
    monkeypatch.setattr(zoo, "mnist_vae", lambda **kw: calls.append(kw) or ("model", "history"))
    assert zoo.mnist_latent_vae(20) == ("model", "history")
    zoo.mnist_latent_vae(2, device="cpu")
    assert calls[0] == {"z_dim": 20, "samples": None, "device": None}  # chapter 5's model
    assert calls[1] == {"z_dim": 2, "samples": budget("manifold_samples"), "device": "cpu"}


def test_models_come_back_on_the_cpu_unless_a_device_is_asked_for(monkeypatch):
    class Model:
        where = "training device"

        def cpu(self):
            self.where = "cpu"
            return self

    monkeypatch.setattr(zoo, "trained_model", lambda *a, **kw: (Model(), "history"))
    monkeypatch.setattr(zoo, "mnist", lambda split: torch.zeros(1, 784))
    assert zoo.mnist_vae(z_dim=2)[0].where == "cpu"  # e.g. trained on a GPU by default
    assert zoo.mnist_vae(z_dim=2, device="cuda")[0].where == "training device"
