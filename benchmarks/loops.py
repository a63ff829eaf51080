"""The training loops the benchmark times, and the matrix multiplies they are held against.

Four loops train the same VAE (Gaussian MLP encoder, Bernoulli MLP decoder, tanh hidden layers,
estimator B, Adagrad at lr 0.02, dynamic binarization) on the same images:

``aevb``
    :func:`aevb.train.fit` as the chapters call it (two small evaluations included).
``aevb_before``
    the first version of ``fit``'s loop, kept here as the "before" of the optimization: the
    bound through ``torch.distributions`` objects and autograd, a fresh ``torch.bernoulli``
    draw of the whole training set each epoch, the per-tensor (foreach) Adagrad, and a copy of
    the parameters every step for the NaN rollback.
``tight``
    a tight in-memory loop written with plain tensor operations and autograd (random
    minibatches of an in-memory tensor, the default Adagrad): what a careful user writes.
``conventional``
    the loop written the usual way: a per-item ``torch.utils.data.Dataset`` whose
    ``__getitem__`` makes a PIL image and applies a to-tensor transform (as torchvision's MNIST
    with ``transforms.ToTensor()``) and a Bernoulli draw, a ``DataLoader`` (shuffled, batched),
    and an ``nn.Module`` VAE as in PyTorch's VAE example (sigmoid outputs and
    ``F.binary_cross_entropy``, summed), with Adagrad.

The effective speed of a training step is counted as 6 x parameters x samples floating-point
operations (2 for the forward multiply-adds, 4 for the two backward products), and held
against the speed of the very matrix multiplies a step makes (forward, gradient of the input,
gradient of the weight, for every layer, at the batch size) measured in the same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import aevb
from aevb.bound import _elbo  # elbo without its input check, as fit's first version
from aevb.models import ModelSpec, build_model
from aevb.train import TrainConfig, fit


@dataclass(frozen=True)
class Case:
    """One benchmarked model: x_dim-hidden-z_dim at a batch size."""

    name: str
    x_dim: int
    hidden: int
    z_dim: int
    batch_size: int

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.x_dim, self.z_dim, self.hidden, "bernoulli")

    @property
    def layers(self) -> list[tuple[int, int]]:
        """(in, out) of the four linear layers of the VAE."""
        return [
            (self.x_dim, self.hidden),
            (self.hidden, 2 * self.z_dim),
            (self.z_dim, self.hidden),
            (self.hidden, self.x_dim),
        ]

    @property
    def parameters(self) -> int:
        return sum(i * o + o for i, o in self.layers)


#: The version of ``fit``'s loop that a throughput run measures, kept with each run so that
#: the verdict pools only the runs of the loop measured now. To be raised with every change
#: that makes the training step faster or slower, whether or not it changes what the step
#: computes (that is :data:`aevb.cache.TRAINING_REVISION`, which a change of the arithmetic
#: raises too). 2 and 3: the loops of training revisions 2 and 3. 4: revision 3's arithmetic,
#: bit for bit, with the fused step's buffers, views and constants made once per minibatch
#: size, a two-pass finiteness certificate, and the fused Adagrad kernel called directly.
#: 5: version 4 with the transposes of the backward pass made once too.
LOOP_VERSION = 5

CASES = (
    Case("784-400-20, batch 128", 784, 400, 20, 128),
    Case("784-500-20, batch 100 (the paper's MNIST model)", 784, 500, 20, 100),
)


def training_images(limit: int | None = None) -> tuple[torch.Tensor, str]:
    """MNIST training images (N, 784) in [0, 1] and where they came from (random grey
    levels, said so, when no MNIST is available)."""
    try:
        ds = aevb.data.load("mnist", "train", limit=limit, verbose=False)
        return ds.images, f"MNIST training images ({ds.source})"
    except Exception as err:  # noqa: BLE001 - any failure: fall back, and say so
        n = limit or 9000
        x = torch.rand(n, 784, generator=torch.Generator().manual_seed(0))
        return x, f"uniform random grey levels (MNIST unavailable: {err})"


# --------------------------------------------------------------------------- aevb.fit


def run_aevb(case: Case, x: torch.Tensor, samples: int, model=None, seed: int = 0):
    """Seconds for ``fit`` to train on ``samples`` datapoints (a fresh optimizer each call)."""
    model = model if model is not None else build_model(case.spec)
    cfg = TrainConfig(
        samples=samples, batch_size=case.batch_size, n_evals=2, eval_points=100, seed=seed
    )
    t = time.perf_counter()
    fit(model, x, cfg, show_progress=False)
    return time.perf_counter() - t, model


# --------------------------------------------------------------------------- the "before"


def run_before(case: Case, x: torch.Tensor, samples: int, model=None, seed: int = 0):
    """The first version of fit's loop (see the module docstring), timed like ``run_aevb``."""
    model = model if model is not None else build_model(case.spec)
    t = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    params = list(model.parameters())
    optimizer = torch.optim.Adagrad(params, lr=0.02)
    good = [p.detach().clone() for p in params]
    N, M, seen = x.shape[0], case.batch_size, 0
    while seen < samples:
        epoch_x = torch.bernoulli(x, generator=gen)
        perm = torch.randperm(N, generator=gen)
        for start in range(0, N - M + 1, M):
            batch = epoch_x[perm[start : start + M]]
            loss = -_elbo(model, batch, 1, "B").mean()
            if not torch.isfinite(loss):
                raise RuntimeError("non-finite bound")
            with torch.no_grad():
                torch._foreach_copy_(good, params)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += M
            if seen >= samples:
                break
    return time.perf_counter() - t, model


# --------------------------------------------------------------------------- tight loop


class PlainVAE(nn.Module):
    """The same VAE written with nn.Linear layers and plain tensor operations."""

    def __init__(self, case: Case) -> None:
        super().__init__()
        self.z = case.z_dim
        self.enc = nn.Sequential(
            nn.Linear(case.x_dim, case.hidden), nn.Tanh(), nn.Linear(case.hidden, 2 * case.z_dim)
        )
        self.dec = nn.Sequential(
            nn.Linear(case.z_dim, case.hidden), nn.Tanh(), nn.Linear(case.hidden, case.x_dim)
        )
        aevb.models.init_paper_(self)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mu, log_var = self.enc(x).chunk(2, -1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
        kl = -0.5 * torch.sum(1 + log_var - mu.square() - log_var.exp())
        return (rec + kl) / x.shape[0]


def run_tight(case: Case, x: torch.Tensor, samples: int, model=None, seed: int = 0):
    """A tight in-memory loop with autograd (random minibatches, Bernoulli draw per batch)."""
    model = model if model is not None else PlainVAE(case)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.02)
    N, M, seen = x.shape[0], case.batch_size, 0
    t = time.perf_counter()
    while seen < samples:
        batch = torch.bernoulli(x[torch.randint(0, N, (M,))])
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += M
    return time.perf_counter() - t, model


# --------------------------------------------------------------------------- conventional


class ToTensor:
    """torchvision's ``transforms.ToTensor`` for a greyscale PIL image: (1, H, W) in [0, 1]."""

    def __call__(self, pic) -> torch.Tensor:
        img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        img = img.view(pic.size[1], pic.size[0], 1).permute(2, 0, 1).contiguous()
        return img.to(dtype=torch.float32).div(255)


class Compose:
    """torchvision's ``transforms.Compose``."""

    def __init__(self, transforms) -> None:
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


def _bernoulli(t: torch.Tensor) -> torch.Tensor:
    return torch.bernoulli(t)


class ImageDataset(torch.utils.data.Dataset):
    """Per-item access, as torchvision's MNIST: uint8 image -> PIL image -> transform."""

    def __init__(self, images_uint8: torch.Tensor, transform) -> None:
        self.data, self.transform = images_uint8, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self.data[index].numpy())
        return self.transform(img), 0


class ConventionalVAE(nn.Module):
    """PyTorch's VAE example (fc1, fc21, fc22, fc3, fc4) with the paper's tanh layers."""

    def __init__(self, case: Case) -> None:
        super().__init__()
        D, H, Z = case.x_dim, case.hidden, case.z_dim
        self.D = D
        self.fc1, self.fc21, self.fc22 = nn.Linear(D, H), nn.Linear(H, Z), nn.Linear(H, Z)
        self.fc3, self.fc4 = nn.Linear(Z, H), nn.Linear(H, D)
        aevb.models.init_paper_(self)

    def encode(self, x):
        h1 = torch.tanh(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(torch.tanh(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, self.D))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def conventional_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[-1]), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def conventional_loader(case: Case, x: torch.Tensor, seed: int = 0):
    side = int(round(case.x_dim**0.5))
    images = (x * 255).round().to(torch.uint8).view(-1, side, case.x_dim // side)
    dataset = ImageDataset(images, Compose([ToTensor(), _bernoulli]))
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=case.batch_size, shuffle=True, drop_last=True, generator=gen
    )


def run_conventional(case: Case, x: torch.Tensor, samples: int, model=None, seed: int = 0):
    """The usual loop (see the module docstring), timed from the first batch request."""
    model = model if model is not None else ConventionalVAE(case)
    loader = conventional_loader(case, x, seed)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.02)
    model.train()
    seen = 0
    t = time.perf_counter()
    while seen < samples:
        for data, _ in loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = conventional_loss(recon, data, mu, logvar) / data.shape[0]
            loss.backward()
            optimizer.step()
            seen += data.shape[0]
            if seen >= samples:
                break
    return time.perf_counter() - t, model


LOOPS = {
    "aevb": run_aevb,
    "aevb_before": run_before,
    "tight": run_tight,
    "conventional": run_conventional,
}


# --------------------------------------------------------------------------- matmul peak


def matmul_gflops(case: Case, reps: int = 20) -> float:
    """fp32 GFLOP/s of the matrix multiplies of one training step of ``case`` (forward,
    input-gradient and weight-gradient products of every layer at the batch size), timed
    in a tight loop with preallocated outputs."""
    M = case.batch_size
    g = torch.Generator().manual_seed(0)
    work = []
    for i, o in case.layers:
        a, w, d = (torch.randn(*s, generator=g) for s in ((M, i), (o, i), (M, o)))
        work.append((a, w, d, torch.empty(M, o), torch.empty(M, i), torch.empty(o, i)))

    def once():
        for a, w, d, y, da, dw in work:
            torch.mm(a, w.t(), out=y)
            torch.mm(d, w, out=da)
            torch.mm(d.t(), a, out=dw)

    once()
    t = time.perf_counter()
    for _ in range(reps):
        once()
    seconds = (time.perf_counter() - t) / reps
    flops = sum(3 * 2 * M * i * o for i, o in case.layers)
    return flops / seconds / 1e9


def train_gflops(case: Case, samples_per_second: float) -> float:
    """The issue's count: 6 x parameters x samples per second, in GFLOP/s."""
    return 6.0 * case.parameters * samples_per_second / 1e9
