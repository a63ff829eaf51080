"""Appendix F: full variational Bayes — a variational posterior over the decoder's weights too.

The paper's main text estimates θ by maximum likelihood (or MAP) and only the latents get a
variational posterior. Appendix F treats θ as a random variable with a prior p_α(θ) and fits a
Gaussian q_φ(θ) to its posterior. With log p_θ(x) replaced by its own bound (eqs. 15-16)::

    log p_α(X) = KL(q_φ(θ) || p_α(θ|X)) + L(φ; X)                                   (eq. 13)
    L(φ; X) = E_{q_φ(θ)}[log p_θ(X) + log p_α(θ) − log q_φ(θ)]                       (eq. 14)
            ≥ E_{q_φ(θ)}[Σ_i L(θ, φ; x_i)] − KL(q_φ(θ) || p_α(θ))

Both posteriors are reparameterized: z = μ_z + σ_z ⊙ ε (eq. 17), θ = μ_θ + σ_θ ⊙ ζ (eq. 19),
ε, ζ ~ N(0, I). With a minibatch of M of the N datapoints and one θ draw per term::

    f = (N/M) Σ_i [log p_θ(x_i|z_i) + log p(z_i) − log q_φ(z_i|x_i)] + log p_α(θ) − log q_φ(θ)
                                                                          (eqs. 21-22, "A")

and, with the Gaussian KL terms analytic (Appendix F.1, eq. 24, "B")::

    f = (N/M) Σ_i [−KL(q_φ(z|x_i) || p(z)) + log p_θ(x_i|z_i)] − KL(q_φ(θ) || p_α(θ)).

Here θ are the decoder's weights and biases (mean-field Gaussian, p_α(θ) = N(0, I) as in F.1);
the encoder's weights stay point estimates, as in the appendix (they parameterize q_φ(z|x)).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from . import data as _data
from ._checks import check_data, check_model_data, check_positive_int, check_positive_number
from ._random import keeps_global_rng, training_seed, with_salt
from .bound import dataset_bound
from .cache import cache_root
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .models import GaussianMLPEncoder, init_paper_
from .posterior import _Adam
from .progress import training_progress

Theta = dict[str, torch.Tensor]

__all__ = [
    "BayesianLinear",
    "BayesianBernoulliDecoder",
    "FullVBHistory",
    "FullVBVAE",
    "expected_bound",
    "fit_full_vb",
    "full_vb_bound",
    "trained_full_vb",
]


class BayesianLinear(nn.Module):
    """A linear layer whose weight and bias have a mean-field Gaussian posterior q_φ(θ).

    q(W_jk) = N(μ_jk, σ_jk²) with σ = exp(log_sigma); a draw is W = μ + σ ⊙ ζ, ζ ~ N(0, I)
    (eq. 19 of Appendix F), so gradients reach μ and log σ.
    """

    def __init__(
        self, n_in: int, n_out: int, init_std: float = 0.01, init_log_sigma: float = -5.0
    ) -> None:
        super().__init__()
        check_positive_int(n_in, "n_in")
        check_positive_int(n_out, "n_out")
        self.weight_mu = nn.Parameter(torch.randn(n_out, n_in) * init_std)
        self.bias_mu = nn.Parameter(torch.randn(n_out) * init_std)
        self.weight_log_sigma = nn.Parameter(torch.full((n_out, n_in), float(init_log_sigma)))
        self.bias_log_sigma = nn.Parameter(torch.full((n_out,), float(init_log_sigma)))

    def posteriors(self) -> tuple[Normal, Normal]:
        """q(W) and q(b) as element-wise :class:`~torch.distributions.Normal` objects."""
        return (
            Normal(self.weight_mu, self.weight_log_sigma.exp()),
            Normal(self.bias_mu, self.bias_log_sigma.exp()),
        )

    def sample(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized draw (W, b) = μ + σ ⊙ ζ."""
        zw = torch.randn(self.weight_mu.shape, generator=generator).to(self.weight_mu)
        zb = torch.randn(self.bias_mu.shape, generator=generator).to(self.bias_mu)
        return (
            self.weight_mu + self.weight_log_sigma.exp() * zw,
            self.bias_mu + self.bias_log_sigma.exp() * zb,
        )

    def kl(self, prior_std: float = 1.0) -> torch.Tensor:
        """KL(q(W, b) || N(0, prior_std² I)), analytic (the θ term of eq. 24)."""
        total = self.weight_mu.new_zeros(())
        for q in self.posteriors():
            prior = Normal(torch.zeros_like(q.loc), torch.full_like(q.loc, prior_std))
            total = total + kl_divergence(q, prior).sum()
        return total


class BayesianBernoulliDecoder(nn.Module):
    """p_θ(x|z) of eq. 11 (tanh MLP, Bernoulli outputs) with θ ~ q_φ(θ) (Appendix F.1)."""

    def __init__(
        self, z_dim: int, x_dim: int, hidden: int = 200, init_log_sigma: float = -5.0
    ) -> None:
        super().__init__()
        self.z_dim, self.x_dim = z_dim, x_dim
        self.hidden = BayesianLinear(z_dim, hidden, init_log_sigma=init_log_sigma)
        self.out = BayesianLinear(hidden, x_dim, init_log_sigma=init_log_sigma)

    def layers(self) -> dict[str, BayesianLinear]:
        """The Bayesian layers by name."""
        return {"hidden": self.hidden, "out": self.out}

    def sample_theta(self, generator: torch.Generator | None = None) -> Theta:
        """θ = μ + σ ⊙ ζ for every weight and bias (eq. 19): a dict of tensors."""
        theta = {}
        for name, layer in self.layers().items():
            theta[f"{name}.weight"], theta[f"{name}.bias"] = layer.sample(generator)
        return theta

    def theta_mean(self) -> Theta:
        """θ at the posterior mean μ."""
        theta = {}
        for name, layer in self.layers().items():
            theta[f"{name}.weight"], theta[f"{name}.bias"] = layer.weight_mu, layer.bias_mu
        return theta

    def logits(self, z: torch.Tensor, theta: Theta) -> torch.Tensor:
        """The pixel logits for latents z under weights θ."""
        h = torch.tanh(F.linear(z, theta["hidden.weight"], theta["hidden.bias"]))
        return F.linear(h, theta["out.weight"], theta["out.bias"])

    def forward(self, z: torch.Tensor, theta: Theta) -> Independent:
        """p_θ(x|z) as ``Independent(Bernoulli(logits), 1)``."""
        return Independent(Bernoulli(logits=self.logits(z, theta), validate_args=False), 1)

    def kl(self, prior_std: float = 1.0) -> torch.Tensor:
        """KL(q_φ(θ) || p_α(θ)) over all decoder weights, analytic."""
        return sum(layer.kl(prior_std) for layer in self.layers().values())

    def log_q(self, theta: Theta) -> torch.Tensor:
        """log q_φ(θ) of a draw (for the all-Monte-Carlo estimator, eq. 22)."""
        total = 0.0
        for name, layer in self.layers().items():
            qw, qb = layer.posteriors()
            total = total + qw.log_prob(theta[f"{name}.weight"]).sum()
            total = total + qb.log_prob(theta[f"{name}.bias"]).sum()
        return total

    def log_prior(self, theta: Theta, prior_std: float = 1.0) -> torch.Tensor:
        """log p_α(θ) = Σ log N(θ_j; 0, prior_std²)."""
        total = 0.0
        for t in theta.values():
            total = total + Normal(0.0, prior_std).log_prob(t).sum()
        return total

    def sigmas(self) -> dict[str, torch.Tensor]:
        """The posterior standard deviations σ of every weight tensor (detached)."""
        out = {}
        for name, layer in self.layers().items():
            out[f"{name}.weight"] = layer.weight_log_sigma.detach().exp()
            out[f"{name}.bias"] = layer.bias_log_sigma.detach().exp()
        return out

    def n_weights(self) -> int:
        """The number of random weights and biases in θ."""
        return sum(t.numel() for t in self.theta_mean().values())


class _FixedDecoder:
    """The Bayesian decoder at one fixed θ: the interface of :mod:`aevb.models` decoders."""

    def __init__(self, decoder: BayesianBernoulliDecoder, theta: Theta) -> None:
        self._decoder, self.theta = decoder, theta

    def __call__(self, z: torch.Tensor) -> Independent:
        return self._decoder(z, self.theta)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self._decoder.logits(z, self.theta)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))


class _FixedThetaVAE:
    """A view of a :class:`FullVBVAE` at one θ: ``encoder``, ``decoder`` and ``prior()``, so
    :func:`aevb.bound.elbo_b`, :func:`aevb.marginal.importance_log_px` etc. work on it."""

    def __init__(self, model: FullVBVAE, theta: Theta) -> None:
        self.encoder = model.encoder
        self.decoder = _FixedDecoder(model.decoder, theta)
        self._model = model

    def prior(self):
        return self._model.prior()

    def check_input(self, x: torch.Tensor) -> None:
        """As :meth:`FullVBVAE.check_input`."""
        self._model.check_input(x)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means for n draws z ~ p(z)."""
        z = torch.randn(n, self._model.z_dim, generator=generator)
        return self.decoder.mean(z)


class FullVBVAE(nn.Module):
    """Encoder q_φ(z|x) (point-estimated φ) and a decoder with weights θ ~ q_φ(θ) (Appendix F)."""

    def __init__(
        self, x_dim: int, z_dim: int, hidden: int = 200, init_log_sigma: float = -5.0
    ) -> None:
        super().__init__()
        self.x_dim, self.z_dim, self.hidden = x_dim, z_dim, hidden
        self.encoder = GaussianMLPEncoder(x_dim, z_dim, hidden)
        init_paper_(self.encoder)
        self.decoder = BayesianBernoulliDecoder(z_dim, x_dim, hidden, init_log_sigma)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def prior(self) -> Independent:
        """p(z) = N(0, I)."""
        zeros = self._zero.expand(self.z_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is finite (batch, x_dim) data in [0, 1] (the
        decoder is Bernoulli), as :meth:`aevb.models.VAE.check_input`."""
        check_data(x, self.x_dim, unit_interval=True)

    def at(self, theta: Theta) -> _FixedThetaVAE:
        """The ordinary VAE with decoder weights fixed at θ (a view; shares parameters)."""
        return _FixedThetaVAE(self, theta)

    def at_mean(self) -> _FixedThetaVAE:
        """The VAE at the posterior mean of the weights, θ = μ."""
        return self.at(self.decoder.theta_mean())


def full_vb_bound(
    model: FullVBVAE,
    x: torch.Tensor,
    N: int,
    *,
    estimator: str = "B",
    L: int = 1,
    prior_std: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The SGVB estimate of L(φ; X) (nats, the whole data set) from a minibatch x of M points.

    ``estimator="A"``: eqs. 21-22, every term by Monte Carlo; ``"B"``: eq. 24, the KL terms
    of z and θ analytic. L draws of (ζ, ε), each a fresh θ for the whole minibatch.
    Differentiable in all variational parameters (encoder φ, μ_θ, log σ_θ). ``x`` (M, x_dim)
    is checked (finite, in [0, 1], M >= 1; :meth:`FullVBVAE.check_input`).
    """
    check_positive_int(N, "N")
    check_positive_int(L, "L")
    _check_estimator(estimator)
    _check_prior_std(prior_std)
    check_model_data(model, x)
    return _full_vb_bound(model, x, N, estimator, L, prior_std, generator)


def _check_estimator(estimator: str) -> None:
    if estimator not in ("A", "B"):
        raise ValueError(f"estimator={estimator!r}; use 'A' (eq. 22) or 'B' (eq. 24)")


def _check_prior_std(prior_std: float) -> None:
    check_positive_number(prior_std, "prior_std", "a positive standard deviation, e.g. 1.0")


def _full_vb_bound(
    model: FullVBVAE,
    x: torch.Tensor,
    N: int,
    estimator: str,
    L: int,
    prior_std: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """:func:`full_vb_bound` without the checks (for the training loop)."""
    M = x.shape[0]
    q = model.encoder(x)
    mu_z, log_var_z = model.encoder.params(x)
    total = x.new_zeros(())
    for _ in range(L):
        theta = model.decoder.sample_theta(generator)
        eps = torch.randn(mu_z.shape, generator=generator).to(mu_z)
        z = mu_z + torch.exp(0.5 * log_var_z) * eps
        log_px_z = model.decoder(z, theta).log_prob(x)
        if estimator == "A":
            per_point = log_px_z + model.prior().log_prob(z) - q.log_prob(z)
            theta_term = model.decoder.log_prior(theta, prior_std) - model.decoder.log_q(theta)
        else:
            kl_z = -0.5 * torch.sum(1 + log_var_z - mu_z.square() - log_var_z.exp(), -1)
            per_point = log_px_z - kl_z
            theta_term = -model.decoder.kl(prior_std)
        total = total + (N / M) * per_point.sum() + theta_term
    return total / L


@torch.no_grad()
def expected_bound(
    model: FullVBVAE, x: torch.Tensor, n_theta: int, *, seed: int = 0, batch_size: int = 1000
) -> float:
    """E_{q(θ)}[L(θ, φ; x)] averaged over the datapoints x (nats per datapoint): the average
    per-datapoint bound under ``n_theta`` weight draws (each with fixed ε noise). ``x`` is
    checked once (:meth:`FullVBVAE.check_input`)."""
    check_positive_int(n_theta, "n_theta")
    check_positive_int(batch_size, "batch_size")
    check_model_data(model, x)
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for s in range(n_theta):
        theta = model.decoder.sample_theta(gen)
        vals.append(
            dataset_bound(
                model.at(theta),
                x,
                batch_size=batch_size,
                generator=torch.Generator().manual_seed(seed + 1 + s),
            )
        )
    return sum(vals) / len(vals)


@dataclass
class FullVBHistory:
    """The training curve: per-datapoint bound L(φ; X)/N and its parts against samples seen.

    ``bound`` = ``data_term`` − ``kl_theta``, where ``data_term`` is the average per-datapoint
    bound E_q(θ)[L(θ, φ; x)] on a fixed evaluation subset and ``kl_theta`` is
    KL(q_φ(θ) || p_α(θ)) / N.
    """

    samples: list[int] = field(default_factory=list)
    bound: list[float] = field(default_factory=list)
    data_term: list[float] = field(default_factory=list)
    kl_theta: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain lists."""
        return asdict(self)


@keeps_global_rng
def fit_full_vb(
    model: FullVBVAE,
    train_x: torch.Tensor,
    samples: int,
    *,
    batch_size: int = 100,
    lr: float = 3e-3,
    estimator: str = "B",
    prior_std: float = 1.0,
    binarize: str | None = "dynamic",
    eval_points: int = 500,
    n_evals: int = 10,
    seed: int = 0,
    show_progress: bool = True,
) -> FullVBHistory:
    """Maximize L(φ; X) (Appendix F) by Adam on minibatch estimates (eq. 22 or 24).

    Like Algorithm 1, with the minibatch estimate of the full-VB bound in place of eq. 8's.
    The history records the bound per datapoint at about ``n_evals`` log-spaced points,
    evaluated with θ ~ q(θ) on ``eval_points`` fixed training datapoints. Deterministic on CPU
    for a given ``seed``.

    Everything is checked once, before training: ``model`` is a :class:`FullVBVAE`,
    ``train_x`` finite (N, x_dim) data in [0, 1] with N >= 1, ``binarize`` one of "dynamic",
    "static" or None, ``estimator`` "A" or "B".
    """
    if not isinstance(model, FullVBVAE):
        raise TypeError(
            f"fit_full_vb trains a FullVBVAE, got {type(model).__name__}; build one with "
            "FullVBVAE(x_dim, z_dim, hidden)"
        )
    check_positive_int(samples, "samples")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(eval_points, "eval_points")
    check_positive_int(n_evals, "n_evals")
    _check_estimator(estimator)
    _check_prior_std(prior_std)
    if binarize not in ("dynamic", "static", None):
        raise ValueError(f"binarize={binarize!r}; use 'dynamic', 'static' or None")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r}; use a positive step size such as 3e-3")
    check_model_data(model, train_x)
    train_seed = training_seed(seed)  # the evaluations below keep ``seed`` itself
    gen = torch.Generator().manual_seed(train_seed)
    torch.manual_seed(train_seed)
    N = train_x.shape[0]
    batch_size = min(batch_size, N)  # fewer datapoints than a minibatch: one full batch
    x = train_x.float()
    binary = binarize is not None
    if binarize == "static":
        x = _data.binarize_static(x, seed=seed)
    eval_x = x[:eval_points]
    if binarize == "dynamic":
        eval_x = _data.binarize_static(eval_x, seed=seed + 2)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _Adam(params, lr=lr, final_lr=lr, steps=1)  # constant step size
    steps_total = max(1, samples // batch_size)
    points = torch.logspace(0, math.log10(steps_total), n_evals).round().long().unique().tolist()
    history = FullVBHistory()
    seen, step, spent = 0, 0, 0.0
    bar = training_progress(samples, "full VB", show_progress)
    try:
        while seen < samples:
            epoch_x = _data.binarize(x, generator=gen) if binary and binarize == "dynamic" else x
            perm = torch.randperm(N, generator=gen)
            for start in range(0, N - batch_size + 1, batch_size):
                t0 = time.perf_counter()
                batch = epoch_x[perm[start : start + batch_size]]
                loss = -_full_vb_bound(model, batch, N, estimator, 1, prior_std, gen) / N
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the full-VB bound became {float(-loss)} at step {step}; lower lr"
                    )
                opt.step(torch.autograd.grad(loss, params))
                spent += time.perf_counter() - t0
                seen += batch.shape[0]
                step += 1
                bar.update(batch.shape[0])
                if step in points or seen >= samples:
                    _record(model, history, eval_x, N, prior_std, seen, spent, seed)
                if seen >= samples:
                    break
    finally:
        bar.close()
    return history


@torch.no_grad()
def _record(model, history, eval_x, N, prior_std, seen, spent, seed) -> None:
    data_term = expected_bound(model, eval_x, 1, seed=seed + 10)
    kl = float(model.decoder.kl(prior_std)) / N
    history.samples.append(int(seen))
    history.data_term.append(data_term)
    history.kl_theta.append(kl)
    history.bound.append(data_term - kl)
    history.seconds.append(spent)


@keeps_global_rng
def trained_full_vb(
    train,
    samples: int,
    *,
    z_dim: int = 10,
    hidden: int = 200,
    lr: float = 3e-3,
    init_log_sigma: float = -5.0,
    estimator: str = "B",
    seed: int = 0,
    retrain: bool = False,
    verbose: bool = True,
) -> tuple[FullVBVAE, FullVBHistory]:
    """A :class:`FullVBVAE` trained by :func:`fit_full_vb` on ``train`` (a
    :class:`aevb.data.DataSet` or an (N, D) tensor), cached like :func:`aevb.cache.trained_model`.

    The model is stored under ``$AEVB_CACHE/models/fullvb-<key>.pt``, the key hashing the
    configuration and the data; a later call with the same arguments loads it at once. A cached
    file that cannot be read is moved aside (``.corrupt``) and the model is trained again.
    The data are checked first (finite (N, D) values in [0, 1], N >= 1), before any cache look-up.
    """
    _check_estimator(estimator)
    if isinstance(train, torch.Tensor):
        x = train
    elif isinstance(getattr(train, "images", None), torch.Tensor):
        x = train.images
    else:
        raise TypeError(
            f"train must be an aevb.data.DataSet or an (N, D) tensor, got {type(train).__name__}"
        )
    check_data(x, None, name="train" if x is train else "train.images", unit_interval=True)
    if len(x) == 0:
        raise ValueError("train holds no images; pass at least one to train on")
    if isinstance(train, torch.Tensor):
        fp = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    else:
        fp = train.fingerprint()
    config = {
        "z_dim": z_dim,
        "hidden": hidden,
        "samples": samples,
        "lr": lr,
        "init_log_sigma": init_log_sigma,
        "estimator": estimator,
        "seed": seed,
    }
    blob = json.dumps(with_salt({"config": config, "data": fp}), sort_keys=True)
    key = "fullvb-" + hashlib.sha256(blob.encode()).hexdigest()[:24]
    path = cache_root() / "models" / f"{key}.pt"
    torch.manual_seed(training_seed(seed))
    model = FullVBVAE(x.shape[1], z_dim, hidden, init_log_sigma)
    if path.exists() and not retrain:
        try:
            payload = load_checkpoint(path)
            model.load_state_dict(payload["state_dict"])
            if verbose:
                print(f"aevb: loaded cached full-VB model {key} ({samples:,} samples)")
            return model.eval(), FullVBHistory(**payload["history"])
        except (CheckpointError, KeyError, RuntimeError) as err:
            aside = path.with_suffix(".corrupt")
            os.replace(path, aside)
            warnings.warn(f"{err}; moved it to {aside} and training again", stacklevel=2)
    if verbose:
        print(f"aevb: training full-VB model {key} ({samples:,} samples)")
    history = fit_full_vb(model, x, samples, lr=lr, estimator=estimator, seed=seed)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(path, {"config": config, "state_dict": state, "history": history.to_dict()})
    return model.eval(), history
