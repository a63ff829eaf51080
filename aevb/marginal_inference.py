"""A trained VAE as a prior over images: denoising, inpainting, super-resolution (Section 2.1).

The paper's Section 2.1 names "efficient approximate marginal inference of the variable x" as
the third of its three problems: all image restoration tasks where a prior over x is needed.
Every task here observes a corrupted version y of a clean image x and asks for x. With the
VAE as the prior,

    p(x, y) = ∫ p(z) p_θ(x|z) p(y|x) dz,

and when the corruption acts pixel by pixel (or linearly, as down-sampling does) on the
decoder's mean image μ_θ(z), the latent posterior p(z|y) ∝ p(z) p(y|μ_θ(z)) can be fitted per
image exactly like the per-datapoint posteriors of :mod:`aevb.posterior`; the restored image is
the posterior mean E[x | y] = E_{p(z|y)}[E[x | y, z]]. Where y says nothing about x beyond what z
says (the missing pixels of inpainting; super-resolution, whose likelihood is written on μ_θ(z)
alone) the inner expectation is μ_θ(z); for denoising, where the model lets the clean grey level
differ from μ_θ(z) by a slack s, it also leans towards y (:func:`denoise_estimate`).
For inpainting the decoder factorizes over pixels, so the likelihood of the observed pixels is
just the product over them, and the missing pixels' log-likelihood log p(x_miss | x_obs) can be
estimated by importance sampling.

Baselines: mean and median filters (:mod:`scipy.ndimage`), bilinear up-sampling
(:func:`torch.nn.functional.interpolate`), and the nearest training image. Quality: PSNR, and
the log-likelihood of the missing pixels (nats per pixel) where it applies.

Images are flattened rows (n, H·W) with values in [0, 1]; ``shape`` is (H, W).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ._checks import (
    check_data,
    check_features,
    check_finite,
    check_model_data,
    check_positive_int,
    data_dim,
)
from .posterior import GaussianPosterior, LogLik, optimize_gaussian_posterior

Shape = tuple[int, int]

__all__ = [
    "GibbsResult",
    "bernoulli_log_likelihood",
    "bilinear_upsample",
    "block_mask",
    "denoise_estimate",
    "downsample",
    "fill_mean",
    "fill_median",
    "gaussian_noise",
    "inpaint_log_lik",
    "knn_probabilities",
    "mean_filter",
    "median_filter",
    "metropolis_within_gibbs",
    "missing_log_likelihood",
    "missing_log_likelihood_from_samples",
    "nearest_neighbour",
    "nearest_training_image",
    "noise_log_lik",
    "pseudo_gibbs",
    "psnr",
    "random_mask",
    "restore",
    "salt_and_pepper",
    "superres_log_lik",
]


# ----------------------------------------------------------------------------- input checks
# Each public function checks its arguments once, on entry (never inside a sampler's or an
# optimizer's loop), and names the fix in its error.

#: What to do about NaN or inf in an image whose missing pixels are given by a mask.
_MISSING_FIX = (
    "mark missing pixels in the boolean mask, not with NaN: their values are not read, so set "
    "them to any number in [0, 1], e.g. x = torch.nan_to_num(x, nan=0.0)"
)


def _check_shape(shape: Shape, name: str = "shape") -> tuple[int, int]:
    """``shape`` as (H, W), two integers >= 1, or a clear error."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"{name}={shape!r}; pass the image's (height, width), e.g. (28, 28)")
    h, w = shape
    return check_positive_int(h, f"{name}[0] (height)"), check_positive_int(w, f"{name}[1] (width)")


def _check_level(value: float, name: str, *, low: float = 0.0, open_low: bool = False) -> float:
    """``value`` as a finite float >= ``low`` (> ``low`` if ``open_low``), or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (open_low and value == low):
        sign = ">" if open_low else ">="
        raise ValueError(f"{name} must be {sign} {low:g}, got {value!r}")
    return float(value)


def _check_same_shape(t: torch.Tensor, like: torch.Tensor, name: str, like_name: str) -> None:
    if t.shape != like.shape:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)} but {like_name} has {tuple(like.shape)}; "
            f"pass one row per image of {like_name}, with the same pixels"
        )


def _check_mask(
    mask: torch.Tensor,
    like: torch.Tensor,
    name: str,
    like_name: str = "x",
    meaning: str = "True where a pixel is missing",
) -> None:
    """A boolean mask of exactly ``like``'s shape (by default True where a pixel is missing)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(
            f"{name} must be a boolean torch.Tensor, got {type(mask).__name__}; "
            "use torch.as_tensor(..., dtype=torch.bool)"
        )
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} has dtype {mask.dtype}; pass a boolean mask, {meaning}, "
            f"e.g. {name} > 0.5 (block_mask and random_mask make one)"
        )
    if mask.shape != like.shape:
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)}; expected {tuple(like.shape)}, one flag per "
            f"pixel of {like_name}: for one mask shared by every image use "
            f"{name}.expand_as({like_name})"
        )


def _check_weights(w: torch.Tensor, like: torch.Tensor, name: str, like_name: str) -> None:
    """0/1 weights (float, or boolean) of ``like``'s shape: the pixels to compare."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype != torch.bool and not w.is_floating_point():
        raise TypeError(
            f"{name} has dtype {w.dtype}; pass 0/1 floats or booleans, e.g. {name}.float()"
        )
    if w.shape != like.shape:
        raise ValueError(
            f"{name} has shape {tuple(w.shape)}; expected {tuple(like.shape)}, one weight per "
            f"pixel of {like_name} (1 where the pixel is observed): e.g. (~missing).float()"
        )
    if w.dtype != torch.bool:
        low, high = check_finite(w, name, "pass 1 for observed pixels and 0 for missing ones")
        if w.numel() and (low < 0 or high > 1):
            raise ValueError(
                f"{name} has values in [{low:.3g}, {high:.3g}]; pass weights in [0, 1]: "
                "1 for observed pixels, 0 for missing ones"
            )


def _check_bernoulli(model) -> None:
    """Inpainting scores binary pixels: the model's decoder must be a Bernoulli one."""
    decoder = getattr(model, "decoder", None)
    if not callable(getattr(decoder, "logits", None)):
        raise TypeError(
            f"inpainting needs a Bernoulli decoder (binary pixels, eq. 11), but this model's "
            f"decoder is {type(decoder).__name__}; use a model built with decoder='bernoulli'"
        )


def _check_observed(
    model, x: torch.Tensor, missing: torch.Tensor, *, scores_missing: bool = False
) -> None:
    """The checks of every inpainting entry point: a Bernoulli model, binary images x for it
    (finite everywhere: the missing pixels hold any value in [0, 1], or their true values
    where they are scored) and a matching mask."""
    _check_bernoulli(model)
    dim = data_dim(model)
    if dim is not None:
        check_features(x, dim)
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        fix = "x must hold the true pixels everywhere: the missing ones are scored"
        check_finite(x, "x", fix if scores_missing else _MISSING_FIX)
    check_model_data(model, x)
    _check_mask(missing, x, "missing")


def _z_dim(model) -> int:
    return int(model.prior().event_shape[0])


def _check_q(q: GaussianPosterior, n: int, z_dim: int) -> None:
    """A fitted posterior with one row per image and the model's latent dimension."""
    mu = getattr(q, "mu", None)
    if not isinstance(mu, torch.Tensor) or not isinstance(
        getattr(q, "log_var", None), torch.Tensor
    ):
        raise TypeError(
            f"q must be a GaussianPosterior (e.g. the second value restore returns), "
            f"got {type(q).__name__}"
        )
    if tuple(mu.shape) != (n, z_dim) or q.log_var.shape != mu.shape:
        raise ValueError(
            f"q has mu {tuple(mu.shape)} and log_var {tuple(q.log_var.shape)}; expected "
            f"({n}, {z_dim}): one posterior per image, in the model's N_z = {z_dim}. Fit q to "
            "these images (restore returns it)"
        )
    fix = "refit q: its optimization diverged (lower lr)"
    check_finite(mu, "q.mu", fix)
    check_finite(q.log_var, "q.log_var", fix)


def _check_noise(kind: str, level: float, model_sigma: float) -> None:
    if kind not in ("gaussian", "salt-and-pepper"):
        raise ValueError(f"kind={kind!r}; use 'gaussian' or 'salt-and-pepper'")
    _check_level(level, "level")
    if kind == "salt-and-pepper" and not level < 1:
        raise ValueError(f"salt-and-pepper level {level} must lie in [0, 1)")
    _check_level(model_sigma, "model_sigma", open_low=True)


def _check_observation(y: torch.Tensor, name: str, dim: int | None) -> None:
    """A noisy or low-resolution observation: finite float rows (n, dim), n >= 1."""
    check_data(y, dim, name=name)
    if len(y) == 0:
        raise ValueError(f"{name} has shape {tuple(y.shape)}: no images; pass at least one row")


def _check_burn_in(burn_in: int | None, steps: int) -> int:
    if burn_in is None:
        return steps // 2
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < steps:
        raise ValueError(
            f"burn_in={burn_in!r}; use an integer in [0, steps) = [0, {steps}): the first "
            "burn_in steps are discarded, the rest averaged"
        )
    return burn_in


# ----------------------------------------------------------------------------- quality


def psnr(estimate: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None):
    """Peak signal-to-noise ratio per image, 10 log10(1 / MSE) in dB (peak value 1).

    With a boolean ``mask`` (n, D) the mean squared error is taken over the masked pixels only
    (for inpainting: the missing ones). An exact estimate gives +inf. ``estimate`` and
    ``truth`` are finite float images of one shape (n, D) (a clear error otherwise).
    """
    check_data(truth, None, name="truth")
    check_data(estimate, truth.shape[1], name="estimate")
    _check_same_shape(estimate, truth, "estimate", "truth")
    if mask is not None:
        _check_mask(mask, truth, "mask", "truth", "True on the pixels to score")
    err = (estimate - truth).square()
    if mask is None:
        mse = err.mean(-1)
    else:
        m = mask.to(err.dtype)
        mse = (err * m).sum(-1) / m.sum(-1).clamp_min(1)
    return -10.0 * torch.log10(mse)


def bernoulli_log_likelihood(
    probs: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-4
) -> torch.Tensor:
    """Σ_d x_d log p_d + (1 − x_d) log(1 − p_d) over the pixels in ``mask`` (all if None), (n,).

    Probabilities are clipped to [eps, 1 − eps] so a baseline that is sure and wrong pays a
    large but finite price. ``probs`` and ``x`` are (n, D) with values in [0, 1].
    """
    check_data(x, None, name="x", unit_interval=True)
    check_data(probs, x.shape[1], name="probs", unit_interval=True)
    _check_same_shape(probs, x, "probs", "x")
    if mask is not None:
        _check_mask(mask, x, "mask", "x", "True on the pixels to score")
    _check_level(eps, "eps", open_low=True)
    if not eps < 0.5:
        raise ValueError(f"eps={eps!r}; use a small clipping bound such as 1e-4")
    p = probs.clamp(eps, 1 - eps)
    ll = x * p.log() + (1 - x) * (1 - p).log()
    if mask is not None:
        ll = ll * mask.to(ll.dtype)
    return ll.sum(-1)


# ----------------------------------------------------------------------------- corruptions


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None):
    """y = x + σ ε, ε ~ N(0, I) (not clipped, so the noise model is exactly Gaussian).

    ``x`` is a finite float batch of images (n, D) and ``sigma`` >= 0.
    """
    check_data(x, None, name="x")
    _check_level(sigma, "sigma")
    return x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)


def salt_and_pepper(x: torch.Tensor, p: float, generator: torch.Generator | None = None):
    """Each pixel, with probability p, replaced by 0 or 1 (equally likely); ``x`` (n, D)."""
    check_data(x, None, name="x")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"p={p} must be a probability in [0, 1]")
    hit = torch.rand(x.shape, generator=generator) < p
    value = (torch.rand(x.shape, generator=generator) < 0.5).to(x.dtype)
    return torch.where(hit, value, x)


def block_mask(n: int, shape: Shape, top: int, left: int, height: int, width: int):
    """A boolean mask (n, H·W), True where a pixel is MISSING: one rectangular block."""
    check_positive_int(n, "n")
    shape = _check_shape(shape)
    for value, name in ((top, "top"), (left, "left")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"{name} must be an integer >= 0 (pixels from the corner), got {value!r}"
            )
    check_positive_int(height, "height")
    check_positive_int(width, "width")
    m = torch.zeros(shape, dtype=torch.bool)
    m[top : top + height, left : left + width] = True
    if not m.any():
        raise ValueError("the block lies outside the image; check top, left, height, width")
    return m.reshape(1, -1).expand(n, -1).clone()


def random_mask(n: int, d: int, fraction: float, generator: torch.Generator | None = None):
    """A boolean mask (n, d), True where a pixel is MISSING: each pixel missing w.p. fraction."""
    check_positive_int(n, "n")
    check_positive_int(d, "d")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction} must lie strictly between 0 and 1")
    return torch.rand((n, d), generator=generator) < fraction


def downsample(x: torch.Tensor, shape: Shape, factor: int) -> torch.Tensor:
    """Average-pool each image by ``factor`` (28x28 -> 14x14 for 2, -> 7x7 for 4), flattened.

    ``x`` is (..., H·W) with (H, W) = ``shape``, finite.
    """
    _check_factor(shape, factor)
    check_features(x, shape[0] * shape[1])
    check_finite(x, "x")
    return _downsample(x, shape, factor)


def _check_factor(shape: Shape, factor: int) -> None:
    h, w = _check_shape(shape)
    check_positive_int(factor, "factor")
    if h % factor or w % factor:
        raise ValueError(f"image shape {shape} is not divisible by factor {factor}")


def _downsample(x: torch.Tensor, shape: Shape, factor: int) -> torch.Tensor:
    h, w = shape
    imgs = x.reshape(*x.shape[:-1], 1, h, w).reshape(-1, 1, h, w)
    low = F.avg_pool2d(imgs, factor)
    return low.reshape(*x.shape[:-1], (h // factor) * (w // factor))


# ----------------------------------------------------------------------------- baselines


def _check_filter(y: torch.Tensor, shape: Shape, size: int, name: str = "y") -> None:
    """Images (n, H·W) for (H, W) = ``shape``, finite, and a window of ``size`` >= 1 pixels."""
    h, w = _check_shape(shape)
    check_data(y, h * w, name=name)
    check_positive_int(size, "size")


def _images(x: torch.Tensor, shape: Shape) -> np.ndarray:
    return x.detach().cpu().numpy().reshape(-1, *shape)


def mean_filter(y: torch.Tensor, shape: Shape, size: int = 3) -> torch.Tensor:
    """The mean over a size x size window (:func:`scipy.ndimage.uniform_filter`), per image."""
    _check_filter(y, shape, size)
    out = ndimage.uniform_filter(_images(y, shape), size=(1, size, size), mode="nearest")
    return torch.from_numpy(out.reshape(y.shape)).to(y.dtype)


def median_filter(y: torch.Tensor, shape: Shape, size: int = 3) -> torch.Tensor:
    """The median over a size x size window (:func:`scipy.ndimage.median_filter`), per image."""
    _check_filter(y, shape, size)
    out = ndimage.median_filter(_images(y, shape), size=(1, size, size), mode="nearest")
    return torch.from_numpy(out.reshape(y.shape)).to(y.dtype)


def _check_fill(x, missing, shape, size, iters) -> None:
    h, w = _check_shape(shape)
    check_features(x, h * w)
    check_finite(x, "x", _MISSING_FIX)
    _check_filter(x, shape, size, "x")
    _check_mask(missing, x, "missing")
    check_positive_int(iters, "iters")


def fill_mean(
    x: torch.Tensor, missing: torch.Tensor, shape: Shape, size: int = 3, iters: int = 50
) -> torch.Tensor:
    """Fill missing pixels with the mean of their observed neighbours, grown inwards.

    Normalized convolution with :func:`scipy.ndimage.uniform_filter`: each round sets a missing
    pixel to (mean of known values in its window) / (fraction of its window known), where
    known; repeated until every pixel is known (large holes fill from their edges inwards).
    ``x`` (n, H·W) must be finite everywhere: the values under ``missing`` are not read.
    """
    _check_fill(x, missing, shape, size, iters)
    vals = _images(torch.where(missing, torch.zeros_like(x), x), shape).astype(np.float64)
    known = ~_images(missing, shape).astype(bool)
    for _ in range(iters):
        if known.all():
            break
        num = ndimage.uniform_filter(vals * known, size=(1, size, size), mode="constant")
        den = ndimage.uniform_filter(
            known.astype(np.float64), size=(1, size, size), mode="constant"
        )
        new = (~known) & (den > 1e-8)
        vals[new] = num[new] / den[new]
        known = known | new
    vals[~known] = 0.0
    return torch.from_numpy(vals.reshape(x.shape)).to(x.dtype)


def fill_median(
    x: torch.Tensor, missing: torch.Tensor, shape: Shape, size: int = 3, iters: int = 50
) -> torch.Tensor:
    """Fill missing pixels with the median of their known neighbours, grown inwards.

    Each round sets every missing pixel that has a known pixel in its size x size window to
    the median of those known values (:func:`torch.nanmedian` over unfolded windows), until
    every pixel is known. ``x`` (n, H·W) must be finite everywhere: the values under
    ``missing`` are not read.
    """
    _check_fill(x, missing, shape, size, iters)
    h, w = shape
    pad = size // 2
    vals = torch.where(missing, torch.full_like(x, float("nan")), x).reshape(-1, 1, h, w)
    for _ in range(iters):
        unknown = torch.isnan(vals)
        if not unknown.any():
            break
        padded = F.pad(vals, (pad, pad, pad, pad), value=float("nan"))
        windows = F.unfold(padded, size).transpose(1, 2)  # (n, H*W, size*size)
        med = torch.nanmedian(windows, dim=-1).values.reshape(vals.shape)
        vals = torch.where(unknown, med, vals)
    return torch.nan_to_num(vals, nan=0.0).reshape(x.shape)


def bilinear_upsample(y_low: torch.Tensor, low_shape: Shape, factor: int) -> torch.Tensor:
    """Bilinear up-sampling by ``factor`` (:func:`torch.nn.functional.interpolate`), flattened.

    ``y_low`` is (n, h·w) for (h, w) = ``low_shape``, finite.
    """
    h, w = _check_shape(low_shape, "low_shape")
    check_data(y_low, h * w, name="y_low")
    check_positive_int(factor, "factor")
    imgs = y_low.reshape(-1, 1, h, w)
    up = F.interpolate(imgs, scale_factor=factor, mode="bilinear", align_corners=False)
    return up.reshape(y_low.shape[0], -1).clamp(0, 1)


def nearest_neighbour(
    query: torch.Tensor, candidates: torch.Tensor, weights: torch.Tensor | None = None, k: int = 1
) -> torch.Tensor:
    """Indices (n, k) of the k candidates closest to each query in (weighted) squared distance.

    ``weights`` (n, D) of 0/1 restricts the distance to chosen pixels (the observed ones).
    ``query`` (n, D) and ``candidates`` (m, D) are finite; k <= m.
    """
    _check_neighbours(query, candidates, weights, k, ("query", "candidates", "weights"))
    return _nearest(query, candidates, weights, k)


def _check_neighbours(query, candidates, weights, k, names) -> None:
    q, c, w = names
    check_data(query, None, name=q)
    check_data(candidates, None, name=c)
    if candidates.shape[1] != query.shape[1]:
        raise ValueError(
            f"{q} has shape {tuple(query.shape)} but {c} has {tuple(candidates.shape)}; compare "
            "images of one size, flattened the same way: (n, D) and (m, D)"
        )
    check_positive_int(k, "k")
    if k > candidates.shape[0]:
        raise ValueError(
            f"k={k} but {c} holds only {candidates.shape[0]} images; use k <= {candidates.shape[0]}"
        )
    if weights is not None:
        _check_weights(weights, query, w, q)


def _nearest(query, candidates, weights, k) -> torch.Tensor:
    if weights is None:
        d = torch.cdist(query, candidates).square()
    else:
        w = weights.to(query.dtype)
        # Σ_d w_d (q_d − c_d)² = Σ w q² − 2 Σ w q c + Σ w c², batched as matrix products.
        d = (w * query.square()).sum(-1, keepdim=True) - 2 * (w * query) @ candidates.T
        d = d + w @ candidates.square().T
    return d.topk(k, dim=-1, largest=False).indices


def nearest_training_image(
    y: torch.Tensor,
    train: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    observed: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training image whose (transformed) version is closest to each observation y.

    ``transform`` maps clean images to the observation space (e.g. down-sampling); with
    ``observed`` (n, D) only those pixels are compared (inpainting). Returns (n, D) images.
    """
    check_data(train, None, name="train")
    if len(train) == 0:
        raise ValueError("train holds no images; pass at least one training image")
    cand = train if transform is None else transform(train)
    if transform is not None:
        if not isinstance(cand, torch.Tensor) or cand.dim() != 2 or len(cand) != len(train):
            got = tuple(cand.shape) if isinstance(cand, torch.Tensor) else type(cand).__name__
            raise ValueError(
                f"transform(train) gave {got}; expected ({len(train)}, D): one transformed "
                "image per training image, flattened"
            )
        check_data(cand, None, name="transform(train)")
    check_data(y, None, name="y")
    if y.shape[1] != cand.shape[1]:
        where = "train" if transform is None else "transform(train)"
        raise ValueError(
            f"y has shape {tuple(y.shape)} but {where} has {tuple(cand.shape)}; compare "
            "observations and (transformed) training images of one size, flattened the same way"
        )
    if observed is not None:
        _check_weights(observed, y, "observed", "y")
    idx = _nearest(y, cand, observed, 1)[:, 0]
    return train[idx]


def knn_probabilities(
    x: torch.Tensor, observed: torch.Tensor, train_binary: torch.Tensor, k: int = 10
) -> torch.Tensor:
    """Pixel probabilities from the k training images closest on the observed pixels, with
    Laplace smoothing: p_d = (Σ_j x_jd + 1)/(k + 2). A non-parametric density baseline.
    ``x`` (n, D) and ``train_binary`` (m, D) hold values in [0, 1]; ``observed`` (n, D)."""
    check_data(x, None, name="x", unit_interval=True)
    check_data(train_binary, None, name="train_binary", unit_interval=True)
    _check_neighbours(x, train_binary, observed, k, ("x", "train_binary", "observed"))
    idx = _nearest(x, train_binary, observed, k)
    return (train_binary[idx].sum(1) + 1.0) / (k + 2.0)


# ----------------------------------------------------------------------------- likelihoods


def noise_log_lik(
    model, y: torch.Tensor, kind: str, level: float, model_sigma: float = 0.1
) -> LogLik:
    """z ↦ log p(y | μ_θ(z)) for a noisy observation y of the decoder's mean image μ_θ(z).

    ``kind="gaussian"``: y_d ~ N(μ_d, level² + s²); ``kind="salt-and-pepper"``: y_d comes from
    the robust mixture (1 − level) N(μ_d, s²) + level · Uniform[0, 1]. s = ``model_sigma``
    absorbs the gap between grey-level images and the decoder's mean. ``y`` (n, x_dim) may
    leave [0, 1] (Gaussian noise is not clipped) but must be finite.
    """
    _check_noise(kind, level, model_sigma)
    _check_observation(y, "y", data_dim(model))
    if kind == "gaussian":
        std = math.sqrt(level**2 + model_sigma**2)

        def log_lik(z):
            mu = model.decoder.mean(z)
            return torch.distributions.Normal(mu, std).log_prob(y).sum(-1)

    else:
        log_keep = math.log1p(-level)
        log_hit = math.log(level) if level > 0 else -math.inf

        def log_lik(z):
            mu = model.decoder.mean(z)
            clean = torch.distributions.Normal(mu, model_sigma).log_prob(y) + log_keep
            if level == 0:
                return clean.sum(-1)
            return torch.logaddexp(clean, torch.full_like(clean, log_hit)).sum(-1)

    return log_lik


@torch.no_grad()
def denoise_estimate(
    model,
    y: torch.Tensor,
    q: GaussianPosterior,
    kind: str,
    level: float,
    model_sigma: float = 0.1,
    k: int = 32,
    seed: int = 0,
) -> torch.Tensor:
    """E[x | y] under the noise model of :func:`noise_log_lik`, averaged over z ~ q ≈ p(z|y).

    In that model the clean grey level is x_d ~ N(μ_d(z), s²) and y_d its corrupted copy, so
    given z the clean pixel is a weighted combination of the observation and the decoder's mean:

    - Gaussian noise: E[x_d | y_d, z] = μ_d + s²/(s² + σ²) (y_d − μ_d);
    - salt and pepper: E[x_d | y_d, z] = r_d y_d + (1 − r_d) μ_d, with r_d the posterior
      probability that pixel d was not hit, (1−ρ) N(y_d; μ_d, s²) / [(1−ρ) N(y_d; μ_d, s²) + ρ].

    The estimate averages this over ``k`` draws z ~ q. Returns (n, D) images.
    """
    _check_noise(kind, level, model_sigma)
    _check_observation(y, "y", data_dim(model))
    check_positive_int(k, "k")
    _check_q(q, y.shape[0], _z_dim(model))
    z = q.sample(k, torch.Generator().manual_seed(seed))
    mu = model.decoder.mean(z)
    s2 = model_sigma**2
    if kind == "gaussian":
        est = mu + s2 / (s2 + level**2) * (y - mu)
    else:
        if level == 0:
            return y.clone()
        log_clean = torch.distributions.Normal(mu, model_sigma).log_prob(y) + math.log1p(-level)
        r = torch.sigmoid(log_clean - math.log(level))
        est = r * y + (1 - r) * mu
    return est.mean(0)


def inpaint_log_lik(model, x: torch.Tensor, missing: torch.Tensor) -> LogLik:
    """z ↦ log p_θ(x_obs | z) = Σ_{d observed} log Bernoulli(x_d; μ_d(z)).

    Because the decoder factorizes over pixels (eq. 11), marginalising the missing pixels out
    of p_θ(x|z) just drops their factors. ``x`` (n, x_dim) holds binary pixels (values in
    [0, 1], finite everywhere: the missing ones are not read) and ``missing`` is a boolean
    mask of the same shape, True where a pixel is missing.
    """
    _check_observed(model, x, missing)
    obs = (~missing).to(x.dtype)

    def log_lik(z):
        logits = model.decoder.logits(z)
        ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return (ll * obs).sum(-1)

    return log_lik


def superres_log_lik(
    model, y_low: torch.Tensor, shape: Shape, factor: int, sigma: float = 0.05
) -> LogLik:
    """z ↦ log N(y_low; downsample(μ_θ(z)), σ² I): the low-resolution image is the average of
    the high-resolution mean image over factor x factor blocks, plus a little Gaussian noise of
    standard deviation ``sigma`` (τ in chapter 10). Given z, y_low does not depend on x in this
    model, so the restored image is E_q[μ_θ(z)] (:func:`restore`). ``y_low`` is
    (n, (H/factor)·(W/factor)) for (H, W) = ``shape``, finite."""
    _check_factor(shape, factor)
    h, w = shape
    dim = data_dim(model)
    if dim is not None and dim != h * w:
        raise ValueError(
            f"shape {tuple(shape)} has {h * w} pixels but the model's images have {dim}; pass "
            "the (height, width) of the model's images"
        )
    _check_observation(y_low, "y_low", (h // factor) * (w // factor))
    _check_level(sigma, "sigma", open_low=True)

    def log_lik(z):
        low = _downsample(model.decoder.mean(z), shape, factor)
        return torch.distributions.Normal(low, sigma).log_prob(y_low).sum(-1)

    return log_lik


# ----------------------------------------------------------------------------- restoration


@torch.no_grad()
def _posterior_mean_image(model, q: GaussianPosterior, k: int, seed: int) -> torch.Tensor:
    z = q.sample(k, torch.Generator().manual_seed(seed))
    return model.decoder.mean(z).mean(0)


def restore(
    model,
    log_lik: LogLik,
    init: torch.Tensor,
    steps: int,
    *,
    lr: float = 0.05,
    L: int = 1,
    k: int = 32,
    seed: int = 0,
) -> tuple[torch.Tensor, GaussianPosterior]:
    """Restore images under the VAE prior: fit q(z) ≈ p(z|y) per image, return E_q[μ_θ(z)].

    q starts at the encoder's answer for ``init`` (a first guess of the clean images, e.g. a
    filtered or up-sampled y, clipped to [0, 1]) and is refined by ``steps`` steps of
    :func:`aevb.posterior.optimize_gaussian_posterior` on the bound
    E_q[log p(y|μ_θ(z))] − KL(q||p(z)). The restored image averages the decoder's mean over
    ``k`` draws from q. Returns the images (n, D) and the fitted q. ``init`` (n, x_dim) is
    finite (it is clipped to [0, 1] here, so a noisy or filtered image will do).
    """
    if not callable(log_lik):
        raise TypeError(
            f"log_lik must be a function z -> log p(y|z), got {type(log_lik).__name__}; build "
            "one with noise_log_lik, inpaint_log_lik or superres_log_lik"
        )
    check_data(init, data_dim(model), name="init")
    if len(init) == 0:
        raise ValueError("init holds no images; pass at least one row")
    check_positive_int(k, "k")
    with torch.no_grad():
        mu0, log_var0 = model.encoder.params(init.clamp(0, 1))
    q = optimize_gaussian_posterior(log_lik, mu0, log_var0, steps, lr=lr, L=L, seed=seed, n_trace=2)
    return _posterior_mean_image(model, q, k, seed + 1), q


@dataclass
class GibbsResult:
    """A chain over (z, x_miss): the running mean of the missing pixels' probabilities (n, D),
    the kept latent samples (s, n, z_dim) and the acceptance rate per image (1 for pseudo-Gibbs)."""

    probs: torch.Tensor
    z: torch.Tensor
    acceptance: torch.Tensor


def _complete(x, missing, fill):
    return torch.where(missing, fill, x)


@torch.no_grad()
def pseudo_gibbs(
    model,
    x: torch.Tensor,
    missing: torch.Tensor,
    steps: int,
    *,
    burn_in: int | None = None,
    seed: int = 0,
) -> GibbsResult:
    """Pseudo-Gibbs sampling of the missing pixels (Rezende et al., 2014, Section 5.1).

    Alternate z ~ q_φ(z | x_obs, x_miss) (the encoder) and x_miss ~ p_θ(x_miss | z) (the
    decoder), keeping the observed pixels fixed. The missing pixels start at 0.5. The chain
    is not exactly invariant for p(x_miss | x_obs) (q is only an approximation): close to it
    when q is good, but with an imperfect encoder it can drift far from it (Mattei & Frellsen,
    2018; chapter 10 shows a chain that degenerates). Probabilities of the missing pixels are
    averaged after ``burn_in`` (default ``steps // 2``; an integer in [0, steps)). ``x`` and
    ``missing`` are as for :func:`inpaint_log_lik`.
    """
    check_positive_int(steps, "steps")
    burn_in = _check_burn_in(burn_in, steps)
    _check_observed(model, x, missing)
    gen = torch.Generator().manual_seed(seed)
    cur = _complete(x, missing, torch.full_like(x, 0.5))
    acc, kept, zs = torch.zeros_like(x), 0, []
    for t in range(steps):
        mu, log_var = model.encoder.params(cur)
        z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=gen)
        p = model.decoder.mean(z)
        cur = _complete(x, missing, torch.bernoulli(p, generator=gen))
        if t >= burn_in:
            acc += p
            kept += 1
            zs.append(z)
    return GibbsResult(acc / max(kept, 1), torch.stack(zs), torch.ones(x.shape[0]))


@torch.no_grad()
def metropolis_within_gibbs(
    model,
    x: torch.Tensor,
    missing: torch.Tensor,
    steps: int,
    *,
    burn_in: int | None = None,
    seed: int = 0,
) -> GibbsResult:
    """Metropolis-within-Gibbs imputation (Mattei & Frellsen, 2018): pseudo-Gibbs made exact.

    With the current completion x = (x_obs, x_miss), propose z' ~ q_φ(z|x) and accept with
    probability min(1, [p(z') p_θ(x|z') q_φ(z|x)] / [p(z) p_θ(x|z) q_φ(z' | x)]), an
    independence Metropolis–Hastings step targeting p_θ(z | x); then draw
    x_miss ~ p_θ(x_miss | z). Both steps leave the model's p(z, x_miss | x_obs) invariant, so
    the chain samples the missing pixels from the model's conditional (asymptotically).
    ``x``, ``missing`` and ``burn_in`` are as for :func:`pseudo_gibbs`.
    """
    check_positive_int(steps, "steps")
    burn_in = _check_burn_in(burn_in, steps)
    _check_observed(model, x, missing)
    gen = torch.Generator().manual_seed(seed)
    cur = _complete(x, missing, torch.full_like(x, 0.5))
    prior = model.prior()
    mu, log_var = model.encoder.params(cur)
    z = mu  # start at the encoder's mean for the initial completion
    acc, kept, zs = torch.zeros_like(x), 0, []
    accepted = torch.zeros(x.shape[0])
    for t in range(steps):
        q = torch.distributions.Independent(
            torch.distributions.Normal(mu, torch.exp(0.5 * log_var)), 1
        )
        z_new = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=gen)
        log_target_new = prior.log_prob(z_new) + model.decoder(z_new).log_prob(cur)
        log_target_old = prior.log_prob(z) + model.decoder(z).log_prob(cur)
        log_ratio = log_target_new - log_target_old + q.log_prob(z) - q.log_prob(z_new)
        accept = torch.rand(x.shape[0], generator=gen).log() < log_ratio
        z = torch.where(accept[:, None], z_new, z)
        p = model.decoder.mean(z)
        cur = _complete(x, missing, torch.bernoulli(p, generator=gen))
        mu, log_var = model.encoder.params(cur)
        if t >= burn_in:
            acc += p
            kept += 1
            zs.append(z)
            accepted += accept.to(accepted.dtype)
    n_kept = max(kept, 1)
    return GibbsResult(acc / n_kept, torch.stack(zs), accepted / n_kept)


# ----------------------------------------------------------------------------- missing pixels


@torch.no_grad()
def missing_log_likelihood(
    model,
    x: torch.Tensor,
    missing: torch.Tensor,
    q: GaussianPosterior,
    k: int,
    *,
    seed: int = 0,
    chunk: int = 128,
) -> torch.Tensor:
    """log p_θ(x_miss | x_obs) per image (nats), by self-normalised importance sampling.

    ::

        p(x_miss | x_obs) = E_{p(z|x_obs)}[p_θ(x_miss|z)]
                          ≈ Σ_s w_s p_θ(x_miss|z_s) / Σ_s w_s,
        w_s = p(z_s) p_θ(x_obs|z_s) / q(z_s)

    with z_s ~ q, a Gaussian fitted to p(z | x_obs) (for example by :func:`restore` with
    :func:`inpaint_log_lik`). Consistent as k grows; the ratio of two estimates, so it is not a
    bound. ``x`` holds the true pixels everywhere (the missing ones are scored), ``missing``
    is as for :func:`inpaint_log_lik`, and q has one row per image.
    """
    check_positive_int(k, "k")
    check_positive_int(chunk, "chunk")
    _check_observed(model, x, missing, scores_missing=True)
    _check_q(q, x.shape[0], _z_dim(model))
    gen = torch.Generator().manual_seed(seed)
    qd, prior = q.distribution(), model.prior()
    obs, mis = (~missing).to(x.dtype), missing.to(x.dtype)
    num, den, remaining = [], [], k
    while remaining > 0:
        c = min(chunk, remaining)
        z = q.sample(c, gen)
        logits = model.decoder.logits(z)
        ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        log_w = prior.log_prob(z) + (ll * obs).sum(-1) - qd.log_prob(z)
        num.append(torch.logsumexp(log_w + (ll * mis).sum(-1), 0))
        den.append(torch.logsumexp(log_w, 0))
        remaining -= c
    return torch.logsumexp(torch.stack(num), 0) - torch.logsumexp(torch.stack(den), 0)


@torch.no_grad()
def missing_log_likelihood_from_samples(
    model, x: torch.Tensor, missing: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """log (1/s) Σ_s p_θ(x_miss | z_s) per image, for latent samples z (s, n, z_dim) drawn
    (approximately) from p(z | x_obs), e.g. by a Gibbs chain. Nats per image."""
    _check_observed(model, x, missing, scores_missing=True)
    z_dim = _z_dim(model)
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise TypeError(
            f"z must be a float tensor of latent samples, got {getattr(z, 'dtype', type(z))}; "
            "pass e.g. the .z of a GibbsResult"
        )
    if z.dim() != 3 or z.shape[1:] != (x.shape[0], z_dim) or z.shape[0] == 0:
        raise ValueError(
            f"z has shape {tuple(z.shape)}; expected (s, {x.shape[0]}, {z_dim}): s >= 1 latent "
            "samples per image of x, e.g. the .z of a GibbsResult"
        )
    check_finite(z, "z", "pass finite latent samples")
    logits = model.decoder.logits(z)
    ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    lm = (ll * missing.to(x.dtype)).sum(-1)
    return torch.logsumexp(lm, 0) - math.log(z.shape[0])
