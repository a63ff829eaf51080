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
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .models import VAE, ModelSpec, build_model
from .train import History, TrainConfig, fit, load_model


def cache_root() -> Path:
    """``$AEVB_CACHE`` if set, else the per-user cache folder (``~/.cache/aevb``)."""
    env = os.environ.get("AEVB_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("aevb"))


def model_key(spec: ModelSpec, config: TrainConfig, data_fingerprint: str, tag: str = "") -> str:
    """The cache key: a SHA-256 over spec, config, data fingerprint and an optional tag."""
    blob = json.dumps(
        {"spec": spec.to_dict(), "config": config.to_dict(), "data": data_fingerprint, "tag": tag},
        sort_keys=True,
    )
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
    """
    train_x, train_fp = _tensor_and_fingerprint(train)
    test_x, test_fp = _tensor_and_fingerprint(test) if test is not None else (None, "none")
    key = model_key(spec, config, f"{train_fp}/{test_fp}", tag)
    path = cache_root() / "models" / f"{key}.pt"
    if path.exists() and not retrain:
        try:
            model, history, _ = load_model(str(path), device=device or "cpu")
            if verbose:
                print(
                    f"aevb: loaded cached model {key} "
                    f"(N_z={spec.z_dim}, {config.samples:,} samples)"
                )
            return model, history
        except CheckpointError as err:
            aside = path.with_suffix(".corrupt")
            os.replace(path, aside)
            warnings.warn(f"{err}; moved it to {aside} and training again", stacklevel=2)
    model = build_model(spec)
    if verbose:
        print(f"aevb: training model {key} (N_z={spec.z_dim}, {config.samples:,} samples)")
    partial = path.with_suffix(".partial")  # never mistaken for a finished model
    history = fit(model, train_x, config, test_x, device=device, checkpoint=str(partial))
    os.replace(partial, path)
    return model, history


def _tensor_and_fingerprint(data) -> tuple[torch.Tensor, str]:
    if isinstance(data, torch.Tensor):
        digest = hashlib.sha256(data.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        return data, digest
    return data.images, data.fingerprint()
