"""Trained models shared between chapters: keyed by configuration and data, trained once.

A model is stored under ``$AEVB_CACHE/models/<key>.pt`` (default: the user cache folder),
where the key hashes the model spec, the training config and the data's fingerprint. A later
chapter asking for the same model loads it at once. A cached file that cannot be read is moved
aside (``.corrupt``), reported, and the model is trained again: it is never used, never lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ._random import training_seed, with_salt
from .checkpoint import CheckpointError
from .device import resolve_device
from .models import VAE, ModelSpec, build_model
from .train import History, TrainConfig, fit, load_model


def cache_root() -> Path:
    """``$AEVB_CACHE`` if set, else the per-user cache folder (``~/.cache/aevb``)."""
    env = os.environ.get("AEVB_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("aevb"))


#: The revision of the training code, part of every cache key: to be raised whenever a change
#: to the training code changes what a configuration trains to (a different draw of the noise
#: or of the binary pixels, another rounding of a step), so that a cache filled by an earlier
#: version is never taken for this version's results. 2: on a GPU, the evaluations inside
#: ``fit`` no longer re-seed the training noise (the CPU trains as under 1). 3: dynamic
#: binarization draws 16 random bits per pixel (:func:`aevb.train.binarize_batch`), and ``fit``'s
#: fast path computes tanh as 2σ(2h) − 1.
TRAINING_REVISION = 3


def model_key(spec: ModelSpec, config: TrainConfig, data_fingerprint: str, tag: str = "") -> str:
    """The cache key: a SHA-256 over spec, config, data fingerprint, an optional tag,
    :data:`TRAINING_REVISION` and, when it is not 0, the draw salt
    (:func:`aevb._random.draw_salt`)."""
    fields = {
        "spec": spec.to_dict(),
        "config": config.to_dict(),
        "data": data_fingerprint,
        "tag": tag,
        "revision": TRAINING_REVISION,
    }
    blob = json.dumps(with_salt(fields), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def trained_model(
    spec: ModelSpec,
    config: TrainConfig,
    train,
    test=None,
    *,
    tag: str = "",
    device: str | torch.device | None = None,
    retrain: bool = False,
    verbose: bool = True,
) -> tuple[VAE, History]:
    """The model ``spec`` trained by ``config`` on the data set ``train`` — from the cache if
    it is there, else trained now (with a progress bar) and cached.

    ``train`` and ``test`` are :class:`aevb.data.DataSet` objects (their fingerprints enter the
    key) or plain tensors (hashed here). The model is returned on ``device`` (default: CPU).
    Its initial weights come from ``config.seed`` alone, so the same key always means the same
    training run.
    """

    def train_now(model, train_x, test_x, partial):
        return fit(model, train_x, config, test_x, device=device, checkpoint=partial)

    return cached_training(
        spec, config, train, test, train_now,
        tag=tag, label="model", device=device, retrain=retrain, verbose=verbose,
    )  # fmt: skip


Trainer = Callable[[VAE, torch.Tensor, "torch.Tensor | None", str], History]


def cached_training(
    spec: ModelSpec,
    config: TrainConfig,
    train,
    test,
    train_now: Trainer,
    *,
    tag: str = "",
    label: str = "model",
    device: str | torch.device | None = None,
    retrain: bool = False,
    verbose: bool = True,
    load: Callable[[str, str | torch.device], tuple[VAE, Any]] | None = None,
) -> tuple[VAE, Any]:
    """Load the model keyed by (``spec``, ``config``, data, ``tag``), or train it and cache it.

    ``train_now(model, train_x, test_x, partial)`` trains a model freshly initialised from
    ``config.seed`` and leaves its checkpoint at the path ``partial``; that file is renamed to
    the cache entry only once complete, so an interrupted run never passes for a finished
    one. The model comes back on ``device`` (default: the CPU) whether it was trained now or
    loaded. ``load(path, device)`` reads an entry back (default: :func:`aevb.train.load_model`,
    model and :class:`History`). A cached file that cannot be read is moved aside
    (``.corrupt``) and the model is trained again.
    """
    train_x, train_fp = _tensor_and_fingerprint(train)
    test_x, test_fp = _tensor_and_fingerprint(test) if test is not None else (None, "none")
    key = model_key(spec, config, f"{train_fp}/{test_fp}", tag)
    path = cache_root() / "models" / f"{key}.pt"
    what = f"{key} (N_z={spec.z_dim}, {config.samples:,} samples)"
    if path.exists() and not retrain:
        try:
            model, history = (load or _load_vae)(str(path), device or "cpu")
            if verbose:
                print(f"aevb: loaded cached {label} {what}")
            return model, history
        except (CheckpointError, KeyError, RuntimeError) as err:
            aside = path.with_suffix(".corrupt")
            os.replace(path, aside)
            warnings.warn(f"{err}; moved it to {aside} and training again", stacklevel=3)
    model = build_model(spec, seed=training_seed(config.seed))
    if verbose:
        print(f"aevb: training {label} {what}")
    partial = path.with_suffix(".partial")  # never mistaken for a finished model
    partial.parent.mkdir(parents=True, exist_ok=True)
    history = train_now(model, train_x, test_x, str(partial))
    os.replace(partial, path)
    # Where a cached one would be loaded: trained on the default device (a GPU, where there is
    # one) with no ``device`` named, the model still comes back on the CPU, as it would the
    # next time, from the cache.
    model.to(resolve_device(device or "cpu"))
    return model, history


def _load_vae(path: str, device: str | torch.device) -> tuple[VAE, History]:
    model, history, _ = load_model(path, device=device)
    return model, history


def _tensor_and_fingerprint(data) -> tuple[torch.Tensor, str]:
    if isinstance(data, torch.Tensor):
        digest = hashlib.sha256(data.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        return data, digest
    return data.images, data.fingerprint()
