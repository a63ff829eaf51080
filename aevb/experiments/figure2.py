"""Figure 2 of the paper: the lower bound against training samples, AEVB against wake-sleep.

For each latent dimension N_z — {3, 5, 10, 20, 200} on MNIST, {2, 5, 10, 20} on the continuous
data set — one model is trained by AEVB (Algorithm 1) and one with the same encoder and decoder
shapes by the wake-sleep algorithm (:mod:`aevb.wake_sleep`); both record the variational lower
bound (estimator B, the same evaluation points and noise) on training and test data at
log-spaced points of training. The continuous data set is the book's
(:func:`aevb.zoo.continuous_data`): the paper's Frey faces when they can be loaded, else the
nearest available one, Fashion-MNIST grey levels (dequantized) with a Gaussian decoder; the
results say which.

Every length comes from the active profile (``AEVB_PROFILE``): ``figure2_samples`` training
samples per run (the paper: 10^8), ``figure2_hidden_mnist`` / ``figure2_hidden_continuous``
hidden units (the paper: 500 / 200), ``figure2_eval_points`` and ``figure2_evals``. MNIST AEVB
models come from :func:`aevb.zoo.mnist_vae` (cached by :func:`aevb.cache.trained_model`), the
others from the same cache by :func:`aevb.cache.trained_model` and
:func:`aevb.wake_sleep.trained_wake_sleep`.

``python -m aevb figure2`` (the CLI) calls :func:`run`; the book's chapter 6 calls the same.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from .. import data, zoo
from ..cache import trained_model
from ..device import resolve_device
from ..models import ModelSpec
from ..profile import budget, current
from ..progress import progress
from ..train import History, TrainConfig
from ..wake_sleep import trained_wake_sleep

MNIST_LATENTS: tuple[int, ...] = (3, 5, 10, 20, 200)
CONTINUOUS_LATENTS: tuple[int, ...] = (2, 5, 10, 20)
ALGORITHMS: tuple[str, ...] = ("aevb", "wake-sleep")
#: Images of the continuous data set used (the Frey faces have 1,800 / 165 in aevb.data; of
#: Fashion-MNIST's 60,000 / 10,000 the first 10,000 / 1,000 keep 8 training runs affordable).
CONTINUOUS_TRAIN, CONTINUOUS_TEST = 10_000, 1_000

__all__ = [
    "ALGORITHMS",
    "CONTINUOUS_LATENTS",
    "MNIST_LATENTS",
    "continuous_data",
    "cpu_threads",
    "final_bounds",
    "plot",
    "run",
    "settings",
]


@contextlib.contextmanager
def cpu_threads(device: torch.device) -> Iterator[None]:
    """Run the block with one intra-op CPU thread (``$AEVB_THREADS`` to choose another number).

    These MLPs are small (M = 100 rows): a second thread gains little on an idle machine, and
    on a busy one (a shared 2-core machine) spinning OpenMP threads slowed training 10-50x in
    our measurements. Nothing changes on a GPU. The previous setting is restored afterwards.
    """
    if device.type != "cpu":
        yield
        return
    raw = os.environ.get("AEVB_THREADS", "1")
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(
            f"AEVB_THREADS={raw!r}; set it to a whole number of CPU threads >= 1 "
            "(e.g. AEVB_THREADS=1), or unset it"
        )
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def settings(profile: str | None = None) -> dict:
    """The budgets of this experiment under ``profile`` (default: the active one)."""
    profile = profile or current()
    return {
        "profile": profile,
        "samples": budget("figure2_samples", profile),
        "hidden_mnist": budget("figure2_hidden_mnist", profile),
        "hidden_continuous": budget("figure2_hidden_continuous", profile),
        "eval_points": budget("figure2_eval_points", profile),
        "n_evals": budget("figure2_evals", profile),
    }


def continuous_data() -> tuple[data.DataSet, data.DataSet, str]:
    """The continuous data set of the book (:func:`aevb.zoo.continuous_data`: the paper's Frey
    faces if they can be had, else Fashion-MNIST, dequantized), its first 10,000 training and
    1,000 test images, and a sentence saying which data set it is and why."""
    train, test = zoo.continuous_data("train"), zoo.continuous_data("test")
    train = _head(train, CONTINUOUS_TRAIN)
    test = _head(test, CONTINUOUS_TEST)
    if train.name == "frey-face":
        note = f"Frey Face, the paper's data set ({len(train):,} train / {len(test):,} test)"
    else:
        note = (
            f"Fashion-MNIST ({len(train):,} train / {len(test):,} test grey-level images, "
            "dequantized, Gaussian decoder) in place of Frey Face, which cannot be had here"
        )
    return train, test, note


def _head(ds: data.DataSet, n: int) -> data.DataSet:
    if len(ds) <= n:
        return ds
    labels = ds.labels[:n] if ds.labels is not None else None
    return dataclasses.replace(ds, images=ds.images[:n].clone(), labels=labels)


def _config(s: dict) -> dict:
    return {"samples": s["samples"], "eval_points": s["eval_points"], "n_evals": s["n_evals"]}


def run(out: str | os.PathLike | None = None, device=None) -> dict:
    """Train the 18 models of Figure 2 (or load them from the cache), write
    ``figure2.json``, ``figure2.csv`` and ``figure2.png`` into ``out`` (if given) and return
    the results: settings, data sources and one record per (data, N_z, algorithm) with its
    :class:`~aevb.train.History` as a dict."""
    dev = resolve_device(device)
    s = settings()
    started = time.perf_counter()
    results: dict = {"settings": s, "runs": []}
    with cpu_threads(dev):
        mnist_train, mnist_test = zoo.mnist("train"), zoo.mnist("test")
        cont_train, cont_test, cont_note = continuous_data()
        results["data"] = {
            "mnist": f"MNIST: {mnist_train.source} ({len(mnist_train):,} "
            f"train / {len(mnist_test):,} test)",
            "continuous": cont_note,
            "continuous_name": cont_train.name,
        }
        jobs = [("mnist", z) for z in MNIST_LATENTS] + [
            ("continuous", z) for z in CONTINUOUS_LATENTS
        ]
        bar = progress(total=2 * len(jobs), desc="Figure 2", unit="run")
        for which, z in jobs:
            if which == "mnist":
                spec = ModelSpec(784, z, s["hidden_mnist"], "bernoulli")
                _, h_aevb = zoo.mnist_vae(
                    z_dim=z, hidden=s["hidden_mnist"], device=dev, **_config(s)
                )
                train, test = mnist_train, mnist_test
                cfg = TrainConfig(**_config(s))
            else:
                spec = ModelSpec(cont_train.images.shape[1], z, s["hidden_continuous"], "gaussian")
                cfg = TrainConfig(binarize=None, **_config(s))
                train, test = cont_train, cont_test
                _, h_aevb = trained_model(spec, cfg, train, test, device=dev)
            bar.update(1)
            _, h_ws = trained_wake_sleep(spec, cfg, train, test, device=dev)
            bar.update(1)
            for algo, h in (("aevb", h_aevb), ("wake-sleep", h_ws)):
                results["runs"].append(
                    {
                        "data": which,
                        "z_dim": z,
                        "algorithm": algo,
                        "hidden": spec.hidden,
                        "history": h.to_dict(),
                    }
                )
        bar.close()
    results["seconds"] = time.perf_counter() - started
    if out is not None:
        write(results, Path(out))
    return results


def final_bounds(results: dict) -> list[dict]:
    """One row per (data, N_z): the last train and test bounds of AEVB and wake-sleep and the
    gap (AEVB − wake-sleep) on the test set, in nats."""
    rows: dict[tuple[str, int], dict] = {}
    for r in results["runs"]:
        row = rows.setdefault((r["data"], r["z_dim"]), {"data": r["data"], "z_dim": r["z_dim"]})
        h = r["history"]
        row[f"{r['algorithm']}_train"] = h["train_bound"][-1]
        row[f"{r['algorithm']}_test"] = h["test_bound"][-1]
    for row in rows.values():
        row["test_gap"] = row["aevb_test"] - row["wake-sleep_test"]
    return list(rows.values())


def write(results: dict, out: Path) -> dict[str, Path]:
    """Write the results as JSON, a long-format CSV and the PNG figure into ``out``."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "figure2.json", "csv": out / "figure2.csv", "png": out / "figure2.png"}
    paths["json"].write_text(json.dumps(results, indent=1))
    with paths["csv"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["data", "z_dim", "algorithm", "samples", "train_bound", "test_bound", "seconds"]
        )
        for r in results["runs"]:
            h = History.from_dict(r["history"])
            for row in zip(h.samples, h.train_bound, h.test_bound, h.seconds, strict=True):
                w.writerow([r["data"], r["z_dim"], r["algorithm"], *row])
    fig = plot(results)
    fig.savefig(paths["png"], dpi=100)
    plt.close(fig)
    return paths


COLORS = {"aevb": "tab:red", "wake-sleep": "tab:green"}
LABELS = {"aevb": "AEVB", "wake-sleep": "wake-sleep"}


BASELINE_LABEL = "mean-image model (ignores z)"


def plot(results: dict, baselines: dict[str, float] | None = None):
    """The figure: one panel per (data set, N_z), bound (nats) against samples on a log axis,
    AEVB and wake-sleep, train (solid) and test (dashed) — the layout of the paper's Figure 2.

    ``baselines`` maps a data set (``"mnist"``, ``"continuous"``) to a value in nats per
    datapoint, drawn as a grey dash-dotted horizontal line in each of its panels (chapter 6
    draws the mean-image model's log-likelihood on MNIST, a model that ignores z).
    """
    import matplotlib.pyplot as plt

    baselines = baselines or {}
    for key, value in baselines.items():
        if key not in ("mnist", "continuous"):
            raise ValueError(
                f"baselines has the key {key!r}; use 'mnist' or 'continuous' (the data sets of "
                "the figure's panels)"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(
                f"baselines[{key!r}] = {value!r}; pass a finite number (nats per datapoint)"
            )

    cont_name = (
        "Frey Face" if results["data"]["continuous_name"] == "frey-face" else "Fashion-MNIST"
    )
    fig, axes = plt.subplots(2, 5, figsize=(10, 4.2))
    panels = [("mnist", z) for z in MNIST_LATENTS] + [("continuous", z) for z in CONTINUOUS_LATENTS]
    for ax, (which, z) in zip(axes.flat, panels, strict=False):
        runs = [r for r in results["runs"] if r["data"] == which and r["z_dim"] == z]
        values = []
        for r in runs:
            h = r["history"]
            for split, style in (("train", "-"), ("test", "--")):
                ax.plot(
                    h["samples"],
                    h[f"{split}_bound"],
                    style,
                    color=COLORS[r["algorithm"]],
                    lw=1.2,
                    label=f"{LABELS[r['algorithm']]} {split}",
                )
                late = [
                    v
                    for n, v in zip(h["samples"], h[f"{split}_bound"], strict=True)
                    if n >= h["samples"][-1] / 100 and math.isfinite(v)
                ]
                values += late
        if which in baselines:
            level = float(baselines[which])
            ax.axhline(level, color="0.4", lw=1.0, ls="-.", label=BASELINE_LABEL)
            values.append(level)
        ax.set_xscale("log")
        if values:
            lo, hi = min(values), max(values)
            pad = 0.1 * (hi - lo) + 1.0
            ax.set_ylim(lo - pad, hi + pad)
        name = "MNIST" if which == "mnist" else cont_name
        ax.set_title(f"{name}, $N_z$ = {z}", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax in (axes[0, 0], axes[1, 0]):
            ax.set_ylabel("lower bound (nats)", fontsize=8)
        if which == "continuous" or z == MNIST_LATENTS[-1]:
            ax.set_xlabel("training samples", fontsize=8)
    legend_ax = axes.flat[-1]
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend_ax.axis("off")
    legend_ax.legend(handles, labels, loc="center", fontsize=8, frameon=False)
    s = results["settings"]
    fig.suptitle(
        f"Figure 2: AEVB vs wake-sleep, lower bound per datapoint "
        f"({s['profile']} profile, {s['samples']:,} samples per run)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
