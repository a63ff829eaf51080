"""Figure 3 of the paper: the marginal likelihood against training samples, small training sets.

A model with N_z = 3 latent variables and 100 hidden units is trained on N = 1,000 and on
N = 50,000 MNIST digits (or as many as the available data hold: the bundled offline subset has
9,000) by three algorithms: AEVB (Algorithm 1), wake-sleep (:mod:`aevb.wake_sleep`) and Monte
Carlo EM with HMC (:mod:`aevb.mcem`, Appendix E). At a few log-spaced points of training the
marginal log-likelihood log p_θ(x) of training and test digits is estimated by the paper's own
estimator (Appendix D, :func:`aevb.marginal_hmc.hmc_marginal`), which needs no encoder and so
applies to all three; for AEVB and wake-sleep it is also estimated by importance sampling with
q_φ(z|x) (:func:`aevb.marginal.importance_log_px`), and the two are compared.

A model "at s samples" is the model trained for s samples; a run to s samples repeats the first
s samples of a longer run with the same seed exactly, so each point of a curve is one cached
model (:func:`aevb.cache.trained_model`, :func:`aevb.wake_sleep.trained_wake_sleep`,
:func:`aevb.mcem.trained_mcem`). Lengths come from the active profile: ``figure3_samples``
(AEVB and wake-sleep), ``figure3_mcem_samples`` (MCEM, about ten times dearer per sample),
``figure3_points``, ``figure3_eval_points``, ``figure3_hmc_samples``, ``importance_samples``.

``python -m aevb figure3`` (the CLI) calls :func:`run`; the book's chapter 7 calls the same.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import torch

from .. import data, zoo
from .._checks import check_model_data, check_positive_int
from .._random import seeded
from ..bound import dataset_bound
from ..cache import trained_model
from ..device import resolve_device
from ..marginal import importance_log_px
from ..marginal_hmc import hmc_marginal
from ..mcem import trained_mcem
from ..models import ModelSpec
from ..profile import budget, current
from ..progress import progress
from ..train import TrainConfig
from ..wake_sleep import trained_wake_sleep
from .figure2 import cpu_threads

Z_DIM, HIDDEN = 3, 100
#: The paper's two training-set sizes (the larger one is capped by the data available).
TRAIN_SIZES: tuple[int, ...] = (1_000, 50_000)
ALGORITHMS: tuple[str, ...] = ("aevb", "wake-sleep", "mcem")
#: The numbers recorded per checkpoint (nats per datapoint, acceptance rates, seconds).
KEYS: tuple[str, ...] = (
    "hmc_train",
    "hmc_test",
    "hmc_test_se",
    "is_train",
    "is_test",
    "bound_train",
    "bound_test",
    "acceptance",
    "train_seconds",
    "train_acceptance",
)

#: Seeds of the fixed binarizations of the evaluation digits (those aevb.train.fit uses).
TRAIN_EVAL_SEED, TEST_EVAL_SEED = 2, 3

__all__ = [
    "ALGORITHMS",
    "TRAIN_SIZES",
    "checkpoints",
    "evaluate",
    "final_table",
    "plot",
    "run",
    "settings",
]


def settings(profile: str | None = None) -> dict:
    """The budgets of this experiment under ``profile`` (default: the active one)."""
    profile = profile or current()
    return {
        "profile": profile,
        "samples": budget("figure3_samples", profile),
        "mcem_samples": budget("figure3_mcem_samples", profile),
        "points": budget("figure3_points", profile),
        "eval_points": budget("figure3_eval_points", profile),
        "hmc_samples": budget("figure3_hmc_samples", profile),
        "importance_samples": budget("importance_samples", profile),
        "z_dim": Z_DIM,
        "hidden": HIDDEN,
    }


def checkpoints(total: int, batch_size: int = 100, k: int = 3, span: float = 100.0) -> list[int]:
    """``k`` log-spaced training lengths from total/span to ``total``, multiples of the
    minibatch size (at least one minibatch), without repeats."""
    if k < 1 or total < 1:
        raise ValueError("k and total must be >= 1")
    check_positive_int(batch_size, "batch_size")
    if not (isinstance(span, (int, float)) and math.isfinite(span) and span >= 1):
        raise ValueError(f"span={span!r}; use a ratio >= 1 of the longest to the shortest run")
    lo = max(batch_size, total / span)
    if k == 1 or lo >= total:
        return [max(batch_size, round(total / batch_size) * batch_size)]
    pts = [lo * (total / lo) ** (i / (k - 1)) for i in range(k)]
    return sorted({max(1, round(p / batch_size)) * batch_size for p in pts})


def _config(samples: int, s: dict) -> TrainConfig:
    # Few in-training evaluations: Figure 3's y-axis is log p(x), estimated separately.
    return TrainConfig(samples=samples, eval_points=max(s["eval_points"], 10), n_evals=2)


@torch.no_grad()
def evaluate(
    model,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    s: dict,
    *,
    encoder: bool = True,
    seed: int = 0,
) -> dict:
    """log p(x) of the evaluation digits by Appendix D (HMC + fitted Gaussian q) and, with
    ``encoder``, by importance sampling with q_φ(z|x) and the bound (estimator B); means
    over the datapoints of each split, in nats, the standard error of the test mean over the
    digits, and the HMC acceptance rate. The Appendix D estimates are also kept per digit
    (``hmc_train_per_digit``, ``hmc_test_per_digit``: lists, in the order of ``x_train`` and
    ``x_test``), for paired comparisons between models. The random
    numbers are fixed by ``seed`` (the same for every model: common random numbers).
    ``x_train`` and ``x_test`` are checked first (the model's data: finite, in [0, 1]), and
    ``s`` must hold the keys of :func:`settings`."""
    check_model_data(model, x_train, name="x_train")
    check_model_data(model, x_test, name="x_test")
    needed = ["hmc_samples"] + (["importance_samples"] if encoder else [])
    missing = [k for k in needed if k not in s]
    if missing:
        raise ValueError(
            f"s lacks {', '.join(map(repr, missing))}; pass figure3.settings() (or a dict "
            "with those keys)"
        )
    dev = next(model.parameters()).device
    x = torch.cat([x_train, x_test]).to(dev)
    n = x_train.shape[0]
    gen = torch.Generator().manual_seed(seed)
    res = hmc_marginal(model, x, s["hmc_samples"], warmup=s["hmc_samples"], generator=gen)
    out = {
        "hmc_train": float(res.log_px[:n].mean()),
        "hmc_test": float(res.log_px[n:].mean()),
        "hmc_test_se": float(res.log_px[n:].std() / math.sqrt(max(x_test.shape[0], 1))),
        "acceptance": float(res.acceptance.mean()),
        "hmc_train_per_digit": res.log_px[:n].tolist(),
        "hmc_test_per_digit": res.log_px[n:].tolist(),
    }
    if encoder:
        with seeded(seed + 1):
            lp = importance_log_px(model, x, s["importance_samples"])
        out["is_train"], out["is_test"] = float(lp[:n].mean()), float(lp[n:].mean())
        g = torch.Generator().manual_seed(seed + 2)
        out["bound_train"] = dataset_bound(model, x[:n], generator=g)
        out["bound_test"] = dataset_bound(model, x[n:], generator=g)
    return out


def _train(
    algorithm: str,
    train: data.DataSet,
    test: data.DataSet,
    full: int,
    samples: int,
    s: dict,
    dev: torch.device,
) -> tuple[torch.nn.Module, dict]:
    """The model ``algorithm`` trained for ``samples`` samples on ``train`` (cached), and what
    its training recorded: seconds, and for MCEM the E-step's HMC acceptance rate."""
    spec = ModelSpec(784, Z_DIM, HIDDEN, "bernoulli")
    cfg = _config(samples, s)
    if algorithm == "aevb":
        # Initial weights come from cfg.seed, as wake-sleep's and MCEM's (build_model's seed).
        if len(train) == full:  # the book's standard MNIST training set: through the zoo
            model, h = zoo.mnist_vae(
                z_dim=Z_DIM,
                hidden=HIDDEN,
                samples=samples,
                eval_points=cfg.eval_points,
                n_evals=cfg.n_evals,
                device=dev,
            )
        else:
            model, h = trained_model(spec, cfg, train, test, device=dev)
        return model, {"train_seconds": h.seconds[-1]}
    if algorithm == "wake-sleep":
        model, h = trained_wake_sleep(spec, cfg, train, test, device=dev)
        return model, {"train_seconds": h.seconds[-1]}
    model, h = trained_mcem(spec, cfg, train, device=dev)
    return model, {"train_seconds": h.seconds[-1], "train_acceptance": h.acceptance[-1]}


def run(out: str | os.PathLike | None = None, device=None) -> dict:
    """Train (or load) the models of Figure 3, estimate log p(x) at each checkpoint, write
    ``figure3.json``, ``figure3.csv`` and ``figure3.png`` into ``out`` (if given) and return
    the results: settings, data, checkpoints and one curve per (N, algorithm)."""
    dev = resolve_device(device)
    s = settings()
    started = time.perf_counter()
    with cpu_threads(dev):
        full_train, test = zoo.mnist("train"), zoo.mnist("test")
        full = len(full_train)
        sizes = sorted({min(n, full) for n in TRAIN_SIZES})
        steps = checkpoints(s["samples"], k=s["points"])
        mcem_steps = [c for c in steps if c < s["mcem_samples"]] + [s["mcem_samples"]]
        x_test = data.binarize_static(test.images[: s["eval_points"]], seed=TEST_EVAL_SEED)
        results: dict = {
            "settings": s,
            "data": f"MNIST: {full_train.source} ({full:,} train / {len(test):,} test)",
            "train_sizes": sizes,
            "checkpoints": steps,
            "mcem_checkpoints": mcem_steps,
            "curves": [],
        }
        jobs = [
            (n, a, c)
            for n in sizes
            for a in ALGORITHMS
            for c in (mcem_steps if a == "mcem" else steps)
        ]
        bar = progress(total=len(jobs), desc="Figure 3", unit="model")
        for n in sizes:
            train = full_train if n == full else zoo.mnist("train", limit=n)
            x_train = data.binarize_static(train.images[: s["eval_points"]], seed=TRAIN_EVAL_SEED)
            for algo in ALGORITHMS:
                curve: dict = {"n_train": n, "algorithm": algo, "samples": []}
                for c in mcem_steps if algo == "mcem" else steps:
                    model, info = _train(algo, train, test, full, c, s, dev)
                    ev = evaluate(model.to(dev), x_train, x_test, s, encoder=algo != "mcem")
                    ev.update(info)
                    curve["samples"].append(c)
                    for key, value in ev.items():
                        curve.setdefault(key, []).append(value)
                    bar.update(1)
                results["curves"].append(curve)
        bar.close()
    results["seconds"] = time.perf_counter() - started
    if out is not None:
        write(results, Path(out))
    return results


def final_table(results: dict) -> list[dict]:
    """One row per (N, algorithm): the last checkpoint's estimates (nats per datapoint)."""
    rows = []
    for c in results["curves"]:
        row = {"n_train": c["n_train"], "algorithm": c["algorithm"], "samples": c["samples"][-1]}
        for key in KEYS:
            row[key] = c[key][-1] if key in c else float("nan")
        rows.append(row)
    return rows


def write(results: dict, out: Path) -> dict[str, Path]:
    """Write the results as JSON, a long-format CSV and the PNG figure into ``out``."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "figure3.json", "csv": out / "figure3.csv", "png": out / "figure3.png"}
    paths["json"].write_text(json.dumps(results, indent=1))
    keys = list(KEYS)
    with paths["csv"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["n_train", "algorithm", "samples", *keys])
        for c in results["curves"]:
            for i, n in enumerate(c["samples"]):
                w.writerow(
                    [c["n_train"], c["algorithm"], n, *[c[k][i] if k in c else "" for k in keys]]
                )
    fig = plot(results)
    fig.savefig(paths["png"], dpi=100)
    plt.close(fig)
    return paths


COLORS = {"aevb": "tab:red", "wake-sleep": "tab:green", "mcem": "tab:blue"}
LABELS = {"aevb": "AEVB", "wake-sleep": "wake-sleep", "mcem": "MCEM"}


def plot(results: dict):
    """The figure: one panel per training-set size, the Appendix D estimate of log p(x)
    (nats) against training samples on a log axis, train (solid) and test (dashed)."""
    import matplotlib.pyplot as plt

    sizes = results["train_sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(10, 3.8), squeeze=False)
    for ax, n in zip(axes[0], sizes, strict=True):
        values = []
        for c in (c for c in results["curves"] if c["n_train"] == n):
            for split, style in (("train", "-"), ("test", "--")):
                ys = c[f"hmc_{split}"]
                ax.plot(
                    c["samples"],
                    ys,
                    style,
                    marker="o",
                    ms=3,
                    color=COLORS[c["algorithm"]],
                    label=f"{LABELS[c['algorithm']]} {split}",
                )
                values += [v for v in ys if math.isfinite(v)]
        ax.set_xscale("log")
        ax.set_xlabel("training samples evaluated")
        ax.set_ylabel("marginal log-likelihood (nats)")
        ax.set_title(f"$N_{{train}}$ = {n:,}")
        if values:
            lo, hi = min(values), max(values)
            ax.set_ylim(lo - 0.05 * (hi - lo) - 1, hi + 0.05 * (hi - lo) + 1)
    axes[0, -1].legend(fontsize=7, ncol=3, loc="lower right")
    s = results["settings"]
    fig.suptitle(
        f"Figure 3: log p(x) by the Appendix D estimator, $N_z$ = {s['z_dim']}, "
        f"{s['hidden']} hidden units ({s['profile']} profile)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
