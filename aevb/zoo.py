"""The book's standard models: which model each chapter trains, named once.

Chapters ask for a model here; :func:`aevb.cache.trained_model` trains it on first use and
every later chapter (or a rebuild) loads it from the cache, so a clean build trains each model
once. Training lengths come from the active profile (:mod:`aevb.profile`).

The standard configurations (see :func:`standard_models` for the full table):

- ``mnist_vae(z_dim=20)``: the book's main model (chapters 3, 4, 5, 8, 9, 10), Bernoulli
  decoder, 500 hidden units, ``budget("aevb_mnist_samples")`` training samples.
- ``mnist_latent_vae(z_dim)`` for ``z_dim`` in :data:`MNIST_Z_DIMS` = (2, 5, 10, 20): the models
  of Figures 4 and 5 and of chapter 8's latent-dimension explorer. ``N_z = 20`` is the main
  model above; the others are ``mnist_vae(z_dim, samples=budget("manifold_samples"))`` (the same
  length in the smoke and paper profiles; shorter in the book profile, to keep chapter 8 within
  its time). ``N_z = 2`` also draws the landing page.
- ``continuous_vae(z_dim)``: Gaussian decoder, 200 hidden units (the paper's Frey Face
  setting) on :func:`continuous_data` — the Frey faces when they can be had, else
  Fashion-MNIST; ``N_z = 10`` in chapter 5, ``N_z = 2`` for Figure 4 (chapter 8).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import torch

from . import data
from ._checks import check_positive_int
from .cache import trained_model
from .models import VAE, ModelSpec
from .profile import budget
from .train import History, TrainConfig

#: N_z of Figure 5 and of the latent-dimension explorer (chapter 8): see :func:`mnist_latent_vae`.
MNIST_Z_DIMS: tuple[int, ...] = (2, 5, 10, 20)
#: N_z of the book's main MNIST model (chapter 5; reused by chapters 3, 4, 8, 9, 10).
MAIN_Z_DIM: int = 20
#: The continuous data sets :func:`continuous_data` tries, in order.
CONTINUOUS_DATASETS: tuple[str, ...] = ("frey-face", "fashion-mnist")
#: Hidden units of the continuous (Gaussian-decoder) model: the paper's Frey Face setting.
CONTINUOUS_HIDDEN: int = 200
#: Seeds of the fixed dequantization noise of :func:`continuous_data`, per split.
DEQUANTIZE_SEEDS: dict[str, int] = {"train": 1000, "test": 1001, "all": 1002}


def mnist(split: str = "train", **kwargs) -> data.DataSet:
    """The MNIST split the book trains and tests on (full MNIST when downloadable, else the
    bundled 10,000-digit subset; ``.source`` says which)."""
    return data.load("mnist", split, **kwargs)


def mnist_vae(
    z_dim: int = 20,
    hidden: int = 500,
    samples: int | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    **config,
) -> tuple[VAE, History]:
    """A VAE with a Bernoulli decoder trained on MNIST by Algorithm 1 (Section 5's setting:
    M = 100, L = 1, Adagrad 0.02, dynamic binarization), for ``budget("aevb_mnist_samples")``
    training samples unless ``samples`` is given. Cached: the same arguments train once.

    ``device`` is where training runs (default: :func:`aevb.default_device`, e.g. a GPU); the
    model is returned on ``device`` if one is given, else on the CPU, whether it was trained now
    or loaded from the cache. It is not part of the cache key.
    """
    check_positive_int(z_dim, "z_dim")
    check_positive_int(hidden, "hidden")
    spec = ModelSpec(x_dim=784, z_dim=z_dim, hidden=hidden, decoder="bernoulli")
    cfg = _config(samples, "aevb_mnist_samples", seed, config)
    return _on(device, trained_model(spec, cfg, mnist("train"), mnist("test"), device=device))


def _config(samples: int | None, key: str, seed: int, options: dict) -> TrainConfig:
    """The TrainConfig of a standard model: ``samples`` (None: the profile's ``budget(key)``)
    and the other options by name, each checked (a clear error, never a silent default)."""
    if samples is not None:
        check_positive_int(samples, "samples")
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"samples", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"unknown training option(s) {', '.join(map(repr, unknown))}; the options are "
            f"{', '.join(sorted(known))} (aevb.train.TrainConfig), plus samples and seed"
        )
    return TrainConfig(samples=budget(key) if samples is None else samples, seed=seed, **options)


def _on(device, trained: tuple[VAE, History]) -> tuple[VAE, History]:
    """A freshly trained model stays on the training device: with no device asked for, hand
    it back on the CPU, like a model loaded from the cache (chapters feed it CPU tensors)."""
    model, history = trained
    return (model.cpu() if device is None else model), history


def mnist_latent_vae(
    z_dim: int, *, device: str | torch.device | None = None
) -> tuple[VAE, History]:
    """The book's MNIST model with latent dimension ``z_dim``: Figures 4 and 5, the landing
    page and chapter 8's explorer all ask for their models here, so they share them.

    ``z_dim = 20`` (:data:`MAIN_Z_DIM`) is the main model, ``mnist_vae(z_dim=20)``; any other
    ``z_dim`` is ``mnist_vae(z_dim, samples=budget("manifold_samples"))``. Cached like
    :func:`mnist_vae`: a model not trained yet is trained now, with a progress bar.
    """
    check_positive_int(z_dim, "z_dim")
    samples = None if z_dim == MAIN_Z_DIM else budget("manifold_samples")
    return mnist_vae(z_dim=z_dim, samples=samples, device=device)


# --------------------------------------------------------------------------------------------
# The continuous data set and its Gaussian-decoder model
# --------------------------------------------------------------------------------------------


def dequantize(ds: data.DataSet, seed: int) -> data.DataSet:
    """``ds`` with each grey level ``k/255`` replaced by ``(k + u)/256``, ``u ~ U(0, 1)``.

    Eight-bit images take only 256 values. A Gaussian decoder on such data can shrink its
    variance without limit on pixels that are always the same (the black background of
    Fashion-MNIST): the density, and the bound, then grow without bound, and the evaluated
    bound jumps by thousands of nats between evaluations. Spreading each level over its
    bin of width 1/256 (fixed noise, drawn once with ``seed``) gives a proper continuous data
    set whose density is bounded; the images change by less than 1/256.
    """
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.rand(ds.images.shape, generator=gen, dtype=torch.float32)
    levels = torch.round(ds.images * 255.0)
    images = (levels + noise) / 256.0
    source = f"{ds.source}; dequantized (255·x + u)/256 with u ~ U(0, 1), seed {seed}"
    return dataclasses.replace(ds, images=images, source=source)


@functools.lru_cache(maxsize=4)
def _continuous(split: str) -> tuple[data.DataSet, str]:
    try:
        ds = data.load("frey-face", split, verbose=False)
        why = "the Frey faces, as in the paper"
    except (FileNotFoundError, data.DataError) as err:
        ds = data.load("fashion-mnist", split, verbose=False)
        why = (
            "Fashion-MNIST grey levels: the Frey faces cannot be had here "
            f"({str(err).split('. ')[0]}), so the nearest available continuous data set is used"
        )
    return dequantize(ds, DEQUANTIZE_SEEDS[split]), why


def continuous_data(split: str = "train", *, verbose: bool = True) -> data.DataSet:
    """The continuous data set of chapters 5 and 8, dequantized (see :func:`dequantize`).

    The Frey faces (the paper's continuous data set, 28 x 20 pixels) if
    ``aevb.data.load("frey-face")`` can have them, else Fashion-MNIST (28 x 28) as the nearest
    available continuous data set; ``.name`` says which and ``.source`` how it was prepared.
    A line saying which and why is printed (``verbose``). Loaded once per process; each call
    returns fresh tensors.
    """
    if split not in data.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(data.SPLITS)}")
    ds, why = _continuous(split)
    if verbose:
        print(f"aevb.zoo: continuous data set [{split}], {len(ds):,} images: {why}.")
        print(f"aevb.zoo: source: {ds.source}")
    return dataclasses.replace(
        ds,
        images=ds.images.clone(),
        labels=ds.labels.clone() if ds.labels is not None else None,
    )


def continuous_vae(
    z_dim: int = 2,
    hidden: int = CONTINUOUS_HIDDEN,
    samples: int | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    **config,
) -> tuple[VAE, History]:
    """A VAE with a Gaussian decoder (sigmoid means, eq. 12) on :func:`continuous_data`,
    trained by Algorithm 1 for ``budget("aevb_frey_samples")`` samples unless ``samples`` is
    given. Cached: the same arguments train once. ``device`` as for :func:`mnist_vae`.

    The paper's Frey Face setting: 200 hidden units, M = 100, L = 1, Adagrad. Adagrad's
    global step size 0.02 (the paper's pick from {0.01, 0.02, 0.1}) keeps the bound finite
    and rising on the dequantized data; measured on Fashion-MNIST (N_z = 2 and 10, 10^5
    samples) it gave a higher bound and sharper reconstructions than 0.01 or Adam at 10^-3.
    """
    check_positive_int(z_dim, "z_dim")
    check_positive_int(hidden, "hidden")
    if config.get("binarize") is not None:
        raise ValueError(
            f"binarize={config['binarize']!r}; continuous_vae models grey levels with a Gaussian "
            "decoder, so the data are never binarized: leave binarize out (None)"
        )
    config["binarize"] = None
    cfg = _config(samples, "aevb_frey_samples", seed, config)
    train = continuous_data("train")
    test = continuous_data("test")
    spec = ModelSpec(x_dim=train.images.shape[1], z_dim=z_dim, hidden=hidden, decoder="gaussian")
    return _on(device, trained_model(spec, cfg, train, test, device=device))


# --------------------------------------------------------------------------------------------
# The table of standard models
# --------------------------------------------------------------------------------------------


class StandardModel(NamedTuple):
    """One standard configuration: how to get it, who uses it, how long it trains."""

    name: str  #: the call, e.g. "mnist_vae(z_dim=20)"
    data: str  #: "mnist" or "continuous"
    z_dim: int
    hidden: int
    decoder: str
    budget_key: str  #: the aevb.profile budget that sets its training length
    samples: int  #: that budget under the profile asked for
    chapters: tuple[str, ...]  #: the pages that use it


def standard_models(profile: str | None = None) -> list[StandardModel]:
    """Every standard model of the book under ``profile`` (default: the active one).

    Two chapters that ask for the same row get the same cached model; a chapter that wants to
    reuse another's model must ask for it exactly as listed here. (Figure 2's models, chapter
    6, have their own sizes and budgets: see :mod:`aevb.experiments.figure2`.)
    """
    users = {2: ("intro", "08"), 5: ("08",), 10: ("08",), 20: ("03", "04", "05", "08", "09", "10")}
    rows = []
    for z in MNIST_Z_DIMS:
        key = "aevb_mnist_samples" if z == MAIN_Z_DIM else "manifold_samples"
        name = f"mnist_vae(z_dim={z})" if z == MAIN_Z_DIM else f"mnist_latent_vae(z_dim={z})"
        rows.append(
            StandardModel(name, "mnist", z, 500, "bernoulli", key, budget(key, profile), users[z])
        )
    rows += [
        StandardModel(
            f"continuous_vae(z_dim={z})",
            "continuous",
            z,
            CONTINUOUS_HIDDEN,
            "gaussian",
            "aevb_frey_samples",
            budget("aevb_frey_samples", profile),
            chapters,
        )
        for z, chapters in ((10, ("05",)), (2, ("08",)))
    ]
    return rows
