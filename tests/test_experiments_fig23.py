"""The reproduction commands of Figures 2 and 3: budgets per profile, the Frey Face fallback,
checkpoints, and a miniature end-to-end run of each that writes its figure and data."""

import csv
import json

import pytest
import torch

from aevb import data
from aevb.experiments import figure2, figure3
from aevb.train import History


def _fake(name, split, n, d=784, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(4, d, generator=g)
    images = (protos[torch.randint(4, (n,), generator=g)] * 0.8 + 0.1).clamp(0, 1)
    return data.DataSet(
        name=name,
        split=split,
        images=images,
        labels=None,
        image_shape=(28, 28),
        source=f"synthetic {name} for tests",
    )


def test_budgets_follow_the_profiles_and_the_paper_scale():
    paper = figure2.settings("paper")
    assert paper["samples"] == 100_000_000  # Figure 2 ran to 10^8 samples
    assert (paper["hidden_mnist"], paper["hidden_continuous"]) == (500, 200)
    assert figure2.settings("smoke")["samples"] < figure2.settings("book")["samples"]
    f3 = figure3.settings("book")
    assert (f3["z_dim"], f3["hidden"]) == (3, 100)
    assert f3["mcem_samples"] <= f3["samples"]


def test_checkpoints_are_log_spaced_minibatch_multiples_ending_at_the_total():
    c = figure3.checkpoints(60_000, 100, k=3)
    assert c == [600, 6000, 60_000]
    assert figure3.checkpoints(500, 100, k=2) == [100, 500]
    assert figure3.checkpoints(50, 100, k=3) == [100]
    assert all(x % 100 == 0 for x in figure3.checkpoints(12_345, 100, k=5))
    with pytest.raises(ValueError):
        figure3.checkpoints(100, 100, k=0)


def test_continuous_data_falls_back_to_fashion_mnist_and_says_so(monkeypatch):
    def fake_continuous(split="train", **kw):
        return _fake("fashion-mnist", split, 12_000 if split == "train" else 50)

    monkeypatch.setattr(figure2.zoo, "continuous_data", fake_continuous)
    train, test, note = figure2.continuous_data()
    assert (train.name, len(train), len(test)) == ("fashion-mnist", 10_000, 50)
    assert "in place of Frey Face" in note


def _tiny(monkeypatch, tmp_path):
    monkeypatch.setenv("AEVB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AEVB_PROGRESS", "0")
    train, test = _fake("mnist", "train", 300), _fake("mnist", "test", 60, seed=1)

    def fake_mnist(split="train", limit=None, **kw):
        d = train if split == "train" else test
        if limit is None or limit >= len(d):
            return d
        return data.DataSet(d.name, d.split, d.images[:limit], None, d.image_shape, d.source)

    monkeypatch.setattr(figure2.zoo, "mnist", fake_mnist)


def test_figure2_runs_end_to_end_and_writes_its_figure_and_data(monkeypatch, tmp_path):
    _tiny(monkeypatch, tmp_path)
    monkeypatch.setattr(
        figure2,
        "continuous_data",
        lambda: (
            _fake("fashion-mnist", "train", 200, seed=2),
            _fake("fashion-mnist", "test", 50, seed=3),
            "synthetic",
        ),
    )
    monkeypatch.setattr(figure2, "MNIST_LATENTS", (2,))
    monkeypatch.setattr(figure2, "CONTINUOUS_LATENTS", (2, 3))
    monkeypatch.setattr(
        figure2,
        "settings",
        lambda profile=None: {
            "profile": "smoke",
            "samples": 300,
            "hidden_mnist": 8,
            "hidden_continuous": 8,
            "eval_points": 30,
            "n_evals": 3,
        },
    )
    res = figure2.run(tmp_path / "out", device="cpu")
    assert len(res["runs"]) == 6
    for r in res["runs"]:
        h = History.from_dict(r["history"])
        assert h.samples[-1] == 300 and len(h.train_bound) == len(h.samples)
    rows = figure2.final_bounds(res)
    assert {(r["data"], r["z_dim"]) for r in rows} == {
        ("mnist", 2),
        ("continuous", 2),
        ("continuous", 3),
    }
    out = tmp_path / "out"
    assert json.loads((out / "figure2.json").read_text())["settings"]["samples"] == 300
    with (out / "figure2.csv").open() as fh:
        assert next(csv.reader(fh))[:4] == ["data", "z_dim", "algorithm", "samples"]
    assert (out / "figure2.png").stat().st_size > 10_000
    # a second run loads every model from the cache: identical numbers
    again = figure2.run(None, device="cpu")
    assert [r["history"]["test_bound"] for r in again["runs"]] == [
        r["history"]["test_bound"] for r in res["runs"]
    ]


def test_figure3_runs_end_to_end_and_writes_its_figure_and_data(monkeypatch, tmp_path):
    _tiny(monkeypatch, tmp_path)
    monkeypatch.setattr(figure3, "TRAIN_SIZES", (100, 50_000))
    monkeypatch.setattr(
        figure3,
        "settings",
        lambda profile=None: {
            "profile": "smoke",
            "samples": 300,
            "mcem_samples": 200,
            "points": 2,
            "eval_points": 6,
            "hmc_samples": 4,
            "importance_samples": 8,
            "z_dim": 2,
            "hidden": 8,
        },
    )
    monkeypatch.setattr(figure3, "Z_DIM", 2)
    monkeypatch.setattr(figure3, "HIDDEN", 8)
    res = figure3.run(tmp_path / "out", device="cpu")
    assert res["train_sizes"] == [100, 300]  # the larger size is capped by the data
    assert res["checkpoints"] == [100, 300] and res["mcem_checkpoints"] == [100, 200]
    assert len(res["curves"]) == 6
    table = figure3.final_table(res)
    mcem = [r for r in table if r["algorithm"] == "mcem"]
    assert all(r["is_test"] != r["is_test"] for r in mcem)  # NaN: no encoder, no IS
    aevb_rows = [r for r in table if r["algorithm"] == "aevb"]
    assert all(r["hmc_test"] == r["hmc_test"] and r["is_test"] == r["is_test"] for r in aevb_rows)
    out = tmp_path / "out"
    assert json.loads((out / "figure3.json").read_text())["checkpoints"] == [100, 300]
    assert (out / "figure3.csv").read_text().startswith("n_train,algorithm,samples,hmc_train")
    assert (out / "figure3.png").stat().st_size > 10_000
    # the Appendix D estimates per evaluated digit, one list per checkpoint, averaging to the means
    for c in res["curves"]:
        for split in ("train", "test"):
            per_digit, means = c[f"hmc_{split}_per_digit"], c[f"hmc_{split}"]
            assert [len(v) for v in per_digit] == [6] * len(c["samples"])
            for v, m in zip(per_digit, means, strict=True):
                assert sum(v) / len(v) == pytest.approx(m, abs=1e-4)
