"""aevb: Auto-Encoding Variational Bayes (Kingma & Welling, 2014), executable.

The package mirrors the book, one module per idea of the paper:

- :mod:`aevb.data` — MNIST, Fashion-MNIST, Frey Face; binarization.
- :mod:`aevb.models` — the MLP encoder q_φ(z|x) and decoders p_θ(x|z) of Appendix C.
- :mod:`aevb.bound` — the variational lower bound and the SGVB estimators A and B (Section 2).
- :mod:`aevb.estimators` — the naive score-function and the reparameterized gradients.
- :mod:`aevb.marginal` — importance-sampled log p_θ(x).
- :mod:`aevb.train` — Algorithm 1 (minibatch AEVB), checkpoints, histories.
- :mod:`aevb.cache` — trained models shared between chapters.
- :mod:`aevb.hmc` — Hamiltonian Monte Carlo over latents (Appendices D and E).
- :mod:`aevb.linear_gaussian` — a model where log p(x) and p(z|x) are exact.
- :mod:`aevb.intractable` — exact log p(x), p(z|x) and KL (grid, closed form) and their cost.
- :mod:`aevb.variance` — variance and SNR of gradient estimators; closed forms (Sections 2.2, 2.4).
- :mod:`aevb.reparameterization` — the three families of reparameterizable distributions (2.4).
- :mod:`aevb.posterior` — per-datapoint posteriors (a Gaussian per x, HMC) vs the encoder.
- :mod:`aevb.marginal_inference` — denoising, inpainting, super-resolution with a VAE prior.
- :mod:`aevb.full_vb` — Appendix F: a variational posterior over the decoder's weights.
- :mod:`aevb.profile` — ``AEVB_PROFILE``: the one switch for training lengths.
- :mod:`aevb.widgets` — explorers that work live in a kernel and static in the HTML book.
"""

from . import bound, data, estimators, hmc, linear_gaussian, marginal, models, profile, widgets
from .bound import dataset_bound, elbo, elbo_a, elbo_b, gaussian_kl, minibatch_bound
from .cache import trained_model
from .device import default_device, resolve_device
from .marginal import importance_log_px
from .models import (
    VAE,
    BernoulliMLPDecoder,
    GaussianMLPDecoder,
    GaussianMLPEncoder,
    ModelSpec,
    build_model,
)
from .profile import budget
from .train import History, NonFiniteBoundError, TrainConfig, fit, load_model

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "BernoulliMLPDecoder",
    "GaussianMLPDecoder",
    "GaussianMLPEncoder",
    "History",
    "ModelSpec",
    "NonFiniteBoundError",
    "TrainConfig",
    "bound",
    "budget",
    "build_model",
    "data",
    "dataset_bound",
    "default_device",
    "elbo",
    "elbo_a",
    "elbo_b",
    "estimators",
    "fit",
    "gaussian_kl",
    "hmc",
    "importance_log_px",
    "linear_gaussian",
    "load_model",
    "marginal",
    "minibatch_bound",
    "models",
    "profile",
    "resolve_device",
    "trained_model",
    "widgets",
]

# Chapters 6-7 (Figures 2 and 3): the wake-sleep and Monte Carlo EM baselines, Appendix D.
from . import marginal_hmc, mcem, wake_sleep  # noqa: E402

__all__ += ["marginal_hmc", "mcem", "wake_sleep"]

# Chapters 9-11: per-datapoint posterior inference, marginal inference (denoising, inpainting,
# super-resolution with a VAE prior) and full variational Bayes (Appendix F).
from . import full_vb, marginal_inference, posterior  # noqa: E402

__all__ += ["full_vb", "marginal_inference", "posterior"]
