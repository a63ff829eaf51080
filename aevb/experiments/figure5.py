"""Figure 5 of the paper: random samples from MNIST models with N_z = 2, 5, 10 and 20.

Each panel shows decoder means E[x|z] for z ~ p(z) = N(0, I) from
``zoo.mnist_latent_vae(N_z)`` (the book's standard models, :data:`aevb.zoo.MNIST_Z_DIMS`;
``N_z = 20`` is the book's main model, trained longer in the book profile). Writes
``figure5.png``, ``figure5.json`` (each model's final bound and provenance) and
``figure5_bounds.csv`` (each model's bound on the training and test sets against training
samples seen).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .. import zoo
from ..manifold import plot_tiles, sample_image
from ..profile import current
from ..progress import progress

#: Samples per panel: a SIDE x SIDE grid.
SIDE = 10


def run(out: Path, device=None) -> dict:
    """Train (or load) ``zoo.mnist_latent_vae(z_dim)`` for each ``z_dim`` in
    ``zoo.MNIST_Z_DIMS`` and draw 100 samples of each into ``out/figure5.png``; data into JSON
    and CSV beside it."""
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = zoo.mnist("test", verbose=False)
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    axes = fig.subplots(1, len(zoo.MNIST_Z_DIMS))
    models, rows = [], []
    for ax, z_dim in zip(axes, progress(zoo.MNIST_Z_DIMS, desc="figure5: models"), strict=True):
        model, history = zoo.mnist_latent_vae(z_dim, device=device)
        plot_tiles(ax, sample_image(model, SIDE, ds.image_shape, seed=z_dim), f"$N_z = {z_dim}$")
        models.append(
            {
                "z_dim": z_dim,
                "samples": history.samples[-1],
                "train_bound": history.train_bound[-1],
                "test_bound": history.test_bound[-1],
            }
        )
        rows += [
            (z_dim, s, tr, te, sec)
            for s, tr, te, sec in zip(
                history.samples,
                history.train_bound,
                history.test_bound,
                history.seconds,
                strict=True,
            )
        ]
    fig.suptitle(f"Random samples E[x|z], z ~ N(0, I) (the paper's Figure 5), profile {current()}")
    png = out / "figure5.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")

    csv_path = out / "figure5_bounds.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["z_dim", "samples", "train_bound_nats", "test_bound_nats", "seconds"])
        writer.writerows(rows)
    record = {
        "figure": "figure5",
        "profile": current(),
        "data": ds.source,
        "samples_per_panel": SIDE * SIDE,
        "bound_unit": "nats per datapoint",
        "models": models,
    }
    js = out / "figure5.json"
    js.write_text(json.dumps(record, indent=2) + "\n")
    return {"figure": "figure5", "files": [str(png), str(js), str(csv_path)], "models": models}
