"""Figure 4 of the paper: learned two-dimensional data manifolds.

For a model with N_z = 2, a grid of linearly spaced points of the unit square is mapped
through the Gaussian inverse CDF to latent points z, and the decoder's mean E[x|z] is drawn
at each (:mod:`aevb.manifold`). Left: MNIST (Bernoulli decoder); right: the continuous data
set of :func:`aevb.zoo.continuous_data` (the Frey faces when available, else Fashion-MNIST,
Gaussian decoder). Writes ``figure4.png`` and ``figure4.json`` (the grid and each model's
training summary).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .. import zoo
from ..manifold import grid_quantiles, latent_grid, manifold_image, plot_tiles
from ..profile import current

#: Points per axis of the latent grid (the paper's MNIST panel has 20 x 20).
GRID = 20


def _summary(name: str, ds, history) -> dict:
    return {
        "data": name,
        "source": ds.source,
        "image_shape": list(ds.image_shape),
        "z_dim": 2,
        "samples": history.samples[-1],
        "train_bound": history.train_bound[-1],
        "test_bound": history.test_bound[-1],
        "bound_unit": "nats per datapoint",
    }


def run(out: Path, device=None) -> dict:
    """Train (or load) ``zoo.mnist_latent_vae(2)`` and ``zoo.continuous_vae(z_dim=2)`` and
    draw their manifolds into ``out/figure4.png``; the data go to ``out/figure4.json``."""
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mnist_model, mnist_history = zoo.mnist_latent_vae(2, device=device)
    cont_model, cont_history = zoo.continuous_vae(z_dim=2, device=device)
    mnist_ds = zoo.mnist("test", verbose=False)
    cont_ds = zoo.continuous_data("test", verbose=False)

    fig = Figure(figsize=(10, 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    labels = ("$z_1$ = Φ⁻¹(u₁), left to right", "$z_2$ = Φ⁻¹(u₂), bottom to top")
    for ax, model, ds, name in (
        (axes[0], mnist_model, mnist_ds, "MNIST"),
        (axes[1], cont_model, cont_ds, _display_name(cont_ds.name)),
    ):
        picture = manifold_image(model, GRID, ds.image_shape)
        plot_tiles(ax, picture, f"{name}, $N_z = 2$", axis_labels=labels)
    fig.suptitle(f"Learned 2-D manifolds (the paper's Figure 4), profile {current()}")
    png = out / "figure4.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")

    u = grid_quantiles(GRID)
    record = {
        "figure": "figure4",
        "profile": current(),
        "grid": {
            "points_per_axis": GRID,
            "quantiles": [float(v) for v in u],
            "z_values": [float(v) for v in latent_grid(GRID)[:GRID, 0]],
            "layout": "row-major; z_1 grows left to right, z_2 grows bottom to top",
        },
        "panels": [
            _summary("mnist", mnist_ds, mnist_history),
            _summary(cont_ds.name, cont_ds, cont_history),
        ],
    }
    if not all(math.isfinite(p["train_bound"]) for p in record["panels"]):
        raise RuntimeError("a model's bound is not finite; see the JSON for which")
    js = out / "figure4.json"
    js.write_text(json.dumps(record, indent=2) + "\n")
    return {"figure": "figure4", "files": [str(png), str(js)], "panels": record["panels"]}


def _display_name(name: str) -> str:
    return {
        "frey-face": "Frey Face",
        "fashion-mnist": "Fashion-MNIST (stand-in for Frey Face)",
    }.get(name, name)
