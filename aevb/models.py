"""The paper's models (Appendix C): MLP encoder q_φ(z|x) and decoders p_θ(x|z).

Every network returns a :mod:`torch.distributions` object, so the estimators in
:mod:`aevb.bound` and :mod:`aevb.estimators` only ask for ``log_prob``, ``rsample`` and
``sample``. Hidden layers are ``tanh`` with a size given as an argument (the paper used 500
units for MNIST and 200 for Frey Face); parameters are initialised from the paper's N(0, 0.01)
(Section 5), read as standard deviation 0.01.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from ._checks import check_data, check_features, check_latent, check_positive_int
from ._random import seeded

DECODERS: tuple[str, ...] = ("bernoulli", "gaussian")


def init_paper_(module: nn.Module, std: float = 0.01) -> nn.Module:
    """Initialise every weight and bias from N(0, std²): Section 5 writes N(0, 0.01), read here
    as standard deviation std = 0.01."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)
    return module


class GaussianMLPEncoder(nn.Module):
    """q_φ(z|x) = N(z; μ, diag σ²), with h = tanh(W₁x + b₁), [μ, log σ²] = W₂h + b₂ (eq. 12).

    The two output layers of Appendix C.2 are one ``Linear`` of width 2·z_dim (the same maths,
    one matrix multiply).
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 500) -> None:
        super().__init__()
        self.x_dim = check_positive_int(x_dim, "x_dim")
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.hidden = nn.Linear(x_dim, check_positive_int(hidden, "hidden"))
        self.out = nn.Linear(hidden, 2 * z_dim)

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean μ and the log-variance log σ² of q_φ(z|x), each (batch, z_dim)."""
        check_features(x, self.x_dim)
        mu, log_var = self.out(torch.tanh(self.hidden(x))).chunk(2, dim=-1)
        return mu, log_var

    def forward(self, x: torch.Tensor) -> Distribution:
        """q_φ(z|x) as ``Independent(Normal(μ, σ), 1)``: one distribution per row of ``x``."""
        mu, log_var = self.params(x)
        return Independent(Normal(mu, torch.exp(0.5 * log_var), validate_args=False), 1)


class BernoulliMLPDecoder(nn.Module):
    """p_θ(x|z) = Π_d Bernoulli(x_d; y_d), y = sigmoid(W₂ tanh(W₁z + b₁) + b₂) (eq. 11).

    The log-likelihood is log p(x|z) = Σ_d x_d log y_d + (1 − x_d) log(1 − y_d); for grey
    levels in [0, 1] this is the cross-entropy the literature uses (not a normalised density).
    """

    def __init__(self, z_dim: int, x_dim: int, hidden: int = 500) -> None:
        super().__init__()
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.x_dim = check_positive_int(x_dim, "x_dim")
        self.hidden = nn.Linear(z_dim, check_positive_int(hidden, "hidden"))
        self.out = nn.Linear(hidden, x_dim)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The logits log(y/(1−y)) of the pixel probabilities, shape (..., x_dim)."""
        check_latent(z, self.z_dim)
        return self.out(torch.tanh(self.hidden(z)))

    def forward(self, z: torch.Tensor) -> Distribution:
        """p_θ(x|z) as ``Independent(Bernoulli(logits), 1)``; accepts leading sample dims."""
        return Independent(Bernoulli(logits=self.logits(z), validate_args=False), 1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z] = y, the pixel probabilities."""
        return torch.sigmoid(self.logits(z))


class GaussianMLPDecoder(nn.Module):
    """p_θ(x|z) = N(x; μ, diag σ²), h = tanh(W₃z + b₃), μ = W₄h + b₄, log σ² = W₅h + b₅ (eq. 12).

    ``mean_activation="sigmoid"`` constrains μ to (0, 1), as the paper did for Frey Face.
    ``min_log_var`` optionally floors log σ² (``None``: no floor, as in the paper).
    """

    def __init__(
        self,
        z_dim: int,
        x_dim: int,
        hidden: int = 200,
        mean_activation: str = "sigmoid",
        min_log_var: float | None = None,
    ) -> None:
        super().__init__()
        if mean_activation not in ("sigmoid", "identity"):
            raise ValueError(
                f"mean_activation={mean_activation!r}; use 'sigmoid' (means in (0, 1)) "
                "or 'identity'"
            )
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.x_dim = check_positive_int(x_dim, "x_dim")
        self.mean_activation = mean_activation
        self.min_log_var = min_log_var
        self.hidden = nn.Linear(z_dim, check_positive_int(hidden, "hidden"))
        self.out = nn.Linear(hidden, 2 * x_dim)

    def params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean μ and log-variance log σ² of p_θ(x|z), each (..., x_dim)."""
        check_latent(z, self.z_dim)
        mu, log_var = self.out(torch.tanh(self.hidden(z))).chunk(2, dim=-1)
        if self.mean_activation == "sigmoid":
            mu = torch.sigmoid(mu)
        if self.min_log_var is not None:
            log_var = log_var.clamp(min=self.min_log_var)
        return mu, log_var

    def forward(self, z: torch.Tensor) -> Distribution:
        """p_θ(x|z) as ``Independent(Normal(μ, σ), 1)``."""
        mu, log_var = self.params(z)
        return Independent(Normal(mu, torch.exp(0.5 * log_var), validate_args=False), 1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z] = μ."""
        return self.params(z)[0]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a VAE: the key of cached models and checkpoints."""

    x_dim: int
    z_dim: int
    hidden: int = 500
    decoder: str = "bernoulli"
    init_std: float = 0.01

    def to_dict(self) -> dict:
        """A JSON- and ``weights_only``-friendly dict."""
        return asdict(self)


class VAE(nn.Module):
    """The pair (q_φ(z|x), p_θ(x|z)) with the prior p_θ(z) = N(0, I) (Section 3)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.decoder not in DECODERS:
            raise ValueError(f"decoder={spec.decoder!r}; use one of {', '.join(DECODERS)}")
        self.spec = spec
        self.encoder = GaussianMLPEncoder(spec.x_dim, spec.z_dim, spec.hidden)
        if spec.decoder == "bernoulli":
            self.decoder: nn.Module = BernoulliMLPDecoder(spec.z_dim, spec.x_dim, spec.hidden)
        else:
            self.decoder = GaussianMLPDecoder(spec.z_dim, spec.x_dim, spec.hidden)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)
        init_paper_(self, spec.init_std)

    @property
    def z_dim(self) -> int:
        """The latent dimension N_z."""
        return self.spec.z_dim

    def prior(self) -> Distribution:
        """p_θ(z) = N(0, I), on the model's device."""
        zeros = self._zero.expand(self.spec.z_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    def check_input(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise a clear error if ``x`` cannot be data for this model: a finite float tensor
        (batch, x_dim), in [0, 1] under a Bernoulli decoder (``name`` names it in the error)."""
        check_data(x, self.spec.x_dim, name=name, unit_interval=self.spec.decoder == "bernoulli")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means E[x|z] for n draws z ~ p(z) (the paper's Figure 5 shows these)."""
        z = torch.randn(n, self.spec.z_dim, generator=generator, device=self._zero.device)
        return self.decoder.mean(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x|z] at z = the posterior mean of q_φ(z|x).

        ``x`` is checked by :meth:`VAE.check_input` (a clear error for data it cannot be).
        """
        self.check_input(x)
        return self.decoder.mean(self.encoder.params(x)[0])


def build_model(spec: ModelSpec | dict, seed: int | None = None) -> VAE:
    """A freshly initialised :class:`VAE` from a spec (or its dict form).

    With ``seed`` the initial weights depend on the seed only, not on the global random state
    (which is left as it was), so a cached model can always be trained again identically.
    """
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec(**spec)
    if seed is None:
        return VAE(spec)
    with seeded(seed):
        return VAE(spec)
