"""Learned manifolds and image grids: the paper's Figures 4 and 5.

Figure 4 of the paper shows, for a model with a two-dimensional latent space, the decoder's
mean image E[x|z] at a grid of latent points: "linearly spaced coordinates on the unit square
were transformed through the inverse CDF of the Gaussian to produce values of the latent
variables z". Because the prior p(z) is N(0, I), equal steps in the unit square are equal
steps in prior probability: every tile of the figure stands for the same prior mass.
Figure 5 shows decoder means E[x|z] for random draws z ~ p(z).

The helpers here are small and pure: :func:`latent_grid` builds the grid, :func:`decode_grid`
maps it through a decoder, :func:`tile_images` lays images out as one picture, and
:func:`plot_tiles` draws such a picture on matplotlib axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributions import Normal

from ._checks import check_finite, check_positive_int

__all__ = [
    "decode_grid",
    "grid_quantiles",
    "latent_grid",
    "manifold_image",
    "plot_tiles",
    "sample_image",
    "tile_images",
]


def grid_quantiles(n: int, margin: float | None = None) -> torch.Tensor:
    """``n`` linearly spaced points of the open unit interval: the quantiles of Figure 4.

    With ``margin=None`` the points are the midpoints ``(i + 0.5) / n`` of ``n`` equal cells
    (each point stands for prior mass 1/n along its axis); otherwise ``n`` points from
    ``margin`` to ``1 - margin`` inclusive. The ends 0 and 1 are excluded: their Gaussian
    quantiles are infinite.
    """
    check_positive_int(n, "n")
    if margin is None:
        return (torch.arange(n, dtype=torch.float64) + 0.5) / n
    if not 0.0 < margin < 0.5:
        raise ValueError(f"margin={margin!r}; use a value in (0, 0.5), e.g. 0.05, or None")
    if n == 1:
        return torch.tensor([0.5], dtype=torch.float64)
    return torch.linspace(margin, 1.0 - margin, n, dtype=torch.float64)


def latent_grid(n: int, margin: float | None = None) -> torch.Tensor:
    """An ``n`` x ``n`` grid of 2-D latent points through the Gaussian inverse CDF (Figure 4).

    Row ``r``, column ``c`` of the grid (flattened row-major, shape ``(n * n, 2)``, float32)
    is ``z = (Φ⁻¹(u_c), Φ⁻¹(u_{n-1-r}))`` with ``u`` from :func:`grid_quantiles`: ``z_1``
    grows to the right and ``z_2`` grows upwards, so a tiled picture reads like a plot with
    the usual axes.
    """
    u = grid_quantiles(n, margin)
    q = Normal(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64)).icdf(u)
    z1 = q.repeat(n)  # columns: left to right
    z2 = q.flip(0).repeat_interleave(n)  # rows: top to bottom, largest z_2 first
    return torch.stack([z1, z2], dim=1).to(torch.float32)


@torch.no_grad()
def decode_grid(model, n: int, margin: float | None = None) -> torch.Tensor:
    """The decoder means E[x|z] over :func:`latent_grid` (``(n * n, x_dim)``, on the CPU).

    ``model`` is a :class:`aevb.models.VAE` with ``N_z = 2`` (a clear error otherwise).
    """
    z_dim = int(model.spec.z_dim)
    if z_dim != 2:
        raise ValueError(
            f"a latent grid needs a model with N_z = 2 (this one has N_z = {z_dim}); "
            "train one with aevb.zoo.mnist_vae(z_dim=2)"
        )
    device = next(model.parameters()).device
    z = latent_grid(n, margin).to(device)
    return model.decoder.mean(z).detach().cpu()


def tile_images(
    images: torch.Tensor,
    image_shape: Sequence[int],
    ncol: int | None = None,
    pad: int = 1,
    pad_value: float = 1.0,
) -> torch.Tensor:
    """Lay out flattened images ``(N, H*W)`` as one picture, row-major, ``ncol`` per row.

    ``ncol`` defaults to the smallest square layout. Images are separated by ``pad`` pixels of
    ``pad_value`` (also around the border); missing cells of the last row are ``pad_value``.
    Returns a 2-D float tensor of shape ``(rows*(H+pad)+pad, ncol*(W+pad)+pad)``. ``images``
    must be finite grey levels (floats; :func:`plot_tiles` shows [0, 1]).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a torch.Tensor, got {type(images).__name__}; use torch.as_tensor"
        )
    if not images.is_floating_point():
        raise TypeError(
            f"images has dtype {images.dtype}; pass grey levels in [0, 1], "
            "e.g. images.float() / 255"
        )
    if images.dim() != 2:
        raise ValueError(f"images has shape {tuple(images.shape)}; expected (N, H*W)")
    h, w = (int(s) for s in image_shape)
    if h * w != images.shape[1]:
        raise ValueError(
            f"image_shape={tuple(image_shape)} holds {h * w} pixels but the images have "
            f"{images.shape[1]}; pass the DataSet's .image_shape"
        )
    n = int(images.shape[0])
    if n < 1:
        raise ValueError("no images to tile")
    check_finite(images, "images", "check the model or data that produced them")
    if pad < 0:
        raise ValueError(f"pad={pad!r}; use 0 or more pixels")
    ncol = ncol or int(torch.ceil(torch.sqrt(torch.tensor(float(n)))).item())
    check_positive_int(ncol, "ncol")
    nrow = -(-n // ncol)
    canvas = torch.full(
        (nrow * (h + pad) + pad, ncol * (w + pad) + pad), float(pad_value), dtype=torch.float32
    )
    pictures = images.detach().cpu().to(torch.float32).reshape(n, h, w)
    for k in range(n):
        r, c = divmod(k, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[top : top + h, left : left + w] = pictures[k]
    return canvas


def manifold_image(
    model, n: int, image_shape: Sequence[int], margin: float | None = None, pad: int = 0
) -> torch.Tensor:
    """Figure 4 as one picture: :func:`decode_grid` tiled ``n`` x ``n``."""
    return tile_images(decode_grid(model, n, margin), image_shape, ncol=n, pad=pad)


@torch.no_grad()
def sample_image(
    model, n: int, image_shape: Sequence[int], seed: int = 0, pad: int = 1
) -> torch.Tensor:
    """Figure 5 as one picture: decoder means of ``n`` x ``n`` draws z ~ p(z) (seeded)."""
    check_positive_int(n, "n")
    # z is drawn on the CPU (the same pictures on every device), then decoded where the model is.
    z = torch.randn(n * n, int(model.spec.z_dim), generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    samples = model.decoder.mean(z.to(device))
    return tile_images(samples.cpu(), image_shape, ncol=n, pad=pad)


def plot_tiles(ax, picture: torch.Tensor, title: str, *, cmap: str = "gray", axis_labels=None):
    """Draw a tiled picture on ``ax`` with a title (grey levels 0 = black, 1 = white).

    ``axis_labels=(xlabel, ylabel)`` labels the axes (ticks are hidden: the tiles are images);
    returns the ``AxesImage``.
    """
    if not isinstance(picture, torch.Tensor) or picture.dim() != 2:
        shape = (
            tuple(picture.shape) if isinstance(picture, torch.Tensor) else type(picture).__name__
        )
        raise ValueError(f"picture is {shape}; pass a 2-D tensor, e.g. from tile_images")
    img = ax.imshow(picture.numpy(), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if axis_labels is not None:
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
    return img
