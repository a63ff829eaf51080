"""Latent grids through the Gaussian inverse CDF (Figure 4) and image tiling (Figures 4, 5)."""

import pytest
import torch
from scipy.stats import norm

from aevb.manifold import (
    decode_grid,
    grid_quantiles,
    latent_grid,
    manifold_image,
    sample_image,
    tile_images,
)
from aevb.models import ModelSpec, build_model


def test_quantiles_are_cell_midpoints_or_a_linspace():
    assert torch.allclose(
        grid_quantiles(4), torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64)
    )
    q = grid_quantiles(5, margin=0.05)
    assert q[0] == pytest.approx(0.05) and q[-1] == pytest.approx(0.95)
    assert torch.all(q[1:] - q[:-1] > 0)
    with pytest.raises(ValueError, match="margin"):
        grid_quantiles(5, margin=0.5)
    with pytest.raises(ValueError, match="n must be"):
        grid_quantiles(0)


def test_latent_grid_is_the_gaussian_inverse_cdf_of_the_unit_square():
    n = 7
    z = latent_grid(n)
    assert z.shape == (n * n, 2) and z.dtype == torch.float32
    expected = norm.ppf((torch.arange(n) + 0.5).numpy() / n)
    # First row: z_1 runs left to right over the quantiles, z_2 is the largest quantile.
    assert torch.allclose(z[:n, 0].double(), torch.tensor(expected), atol=1e-6)
    assert torch.allclose(z[:n, 1], torch.full((n,), float(expected[-1])), atol=1e-6)
    # First column: z_2 runs top to bottom (decreasing), z_1 fixed at the smallest quantile.
    col = z.reshape(n, n, 2)[:, 0]
    assert torch.allclose(col[:, 1].double(), torch.tensor(expected[::-1].copy()), atol=1e-6)
    assert torch.all(col[:, 0] == col[0, 0])
    # Symmetric about 0 (the grid is centred on the prior's mean) and every point distinct.
    assert torch.allclose(z.sum(0), torch.zeros(2), atol=1e-4)
    assert len({tuple(p) for p in z.tolist()}) == n * n


def test_equal_prior_mass_per_cell():
    # Each grid value is the median of a cell of prior mass 1/n: Φ(z) = (i + 0.5)/n.
    z = latent_grid(10)[:10, 0].double()
    assert torch.allclose(torch.tensor(norm.cdf(z.numpy())), grid_quantiles(10), atol=1e-6)


def test_tile_images_places_each_image_row_major():
    imgs = torch.arange(6, dtype=torch.float32).repeat_interleave(6).reshape(6, 6)  # 2x3 each
    canvas = tile_images(imgs, (2, 3), ncol=4, pad=1, pad_value=-1.0)
    assert canvas.shape == (2 * 3 + 1, 4 * 4 + 1)
    for k in range(6):
        r, c = divmod(k, 4)
        top, left = 1 + r * 3, 1 + c * 4
        assert torch.all(canvas[top : top + 2, left : left + 3] == k)
    assert torch.all(canvas[0] == -1.0)  # border
    assert torch.all(canvas[4:6, 1 + 2 * 4 : 1 + 2 * 4 + 3] == -1.0)  # empty cell of row 2
    square = tile_images(torch.rand(10, 4), (2, 2), pad=0)
    assert square.shape == (3 * 2, 4 * 2)  # ceil(sqrt(10)) = 4 columns, so 3 rows
    assert square[4:, 4:].eq(1.0).all()  # the 2 empty cells of the last row hold pad_value


def test_tile_images_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="image_shape"):
        tile_images(torch.rand(3, 10), (3, 3))
    with pytest.raises(ValueError, match="expected"):
        tile_images(torch.rand(3, 3, 3), (3, 3))


def test_decode_grid_and_pictures_from_a_model():
    torch.manual_seed(0)
    model = build_model(ModelSpec(x_dim=12, z_dim=2, hidden=8))
    out = decode_grid(model, 5)
    assert out.shape == (25, 12) and torch.all((out > 0) & (out < 1))
    z = latent_grid(5)
    assert torch.allclose(out, model.decoder.mean(z).detach())
    assert manifold_image(model, 5, (3, 4)).shape == (15, 20)
    a = sample_image(model, 3, (3, 4), seed=1)
    assert a.shape == (3 * 4 + 1, 3 * 5 + 1)
    assert torch.equal(a, sample_image(model, 3, (3, 4), seed=1))  # seeded
    with pytest.raises(ValueError, match="N_z = 2"):
        decode_grid(build_model(ModelSpec(x_dim=12, z_dim=3, hidden=8)), 4)
