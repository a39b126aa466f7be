"""Mixture operators M: combine the receiver's activation with the donor's transferred one.

Every mixture is built as ``cls(lam=..., tokens=..., **options)`` (``options``: the config's
``HKTConfig.mixture_options``) and called as ``mixture(receiver, donor)`` on channel-first tensors
of equal shape. It returns the mixed receiver activation, or a :class:`MixOutput` holding it and a
feature loss (a scalar the Family adds to L1, as the paper's ``mse`` ablation does). A mixture
whose value is always the receiver unchanged sets ``mixes = False``: the Family then runs no
inherited stream and no child->parent mixing, and L1 is its feature loss alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from typing import NamedTuple

from .attention import TOKEN_LAYOUTS, genetic_attention


def _check_pair(module: nn.Module, args: tuple) -> None:
    """Receiver and donor must have one shape: the transfer tau is what reconciles them."""
    receiver, donor = args[0], args[1]
    if receiver.shape != donor.shape:
        raise ValueError(f"{type(module).__name__}: receiver {tuple(receiver.shape)} and donor "
                         f"{tuple(donor.shape)} must have the same shape; a transfer (tau) maps the "
                         f"donor to the receiver's shape first")


class MixOutput(NamedTuple):
    """What a mixture that adds a loss returns: the mixed receiver and the feature loss."""

    value: torch.Tensor
    loss: torch.Tensor | None = None


def split_mix(out: torch.Tensor | MixOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mixed value, feature loss or None) of whatever a mixture returned."""
    if isinstance(out, MixOutput):
        return out.value, out.loss
    return out, None


class Mixture(nn.Module):
    """Base class: stores ``lam`` and ``tokens`` and validates them (see the module docstring).

    A subclass may take further keyword options (``HKTConfig.mixture_options``) in its constructor.
    """

    #: False when the returned value is always the receiver itself (nothing mixes)
    mixes: bool = True

    def __init__(self, lam: float = 0.6, tokens: str = "auto") -> None:
        super().__init__()
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not (0.0 <= lam <= 1.0):
            raise ValueError(f"{type(self).__name__}: lam = {lam!r} must be a number in [0, 1]")
        if tokens not in TOKEN_LAYOUTS:
            raise ValueError(f"{type(self).__name__}: tokens = {tokens!r} must be one of {', '.join(TOKEN_LAYOUTS)}")
        self.lam = float(lam)
        self.tokens = tokens
        self.register_forward_pre_hook(_check_pair)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, tokens={self.tokens!r}"

    def forward(self, receiver: torch.Tensor, donor: torch.Tensor) -> torch.Tensor | MixOutput:
        raise NotImplementedError


class GeneticAttentionMixture(Mixture):
    """The paper's ETM mixture (Eq. 3): ``x' + lam * GA(query=x', source=tau)``."""

    def forward(self, receiver: torch.Tensor, donor: torch.Tensor) -> torch.Tensor:
        return receiver + self.lam * genetic_attention(receiver, donor, self.tokens)


class GateMixture(Mixture):
    """The authors' released code: a per-sample sigmoid gate instead of Eq. 2.

    ``s = sigmoid(<q, k> / sqrt(F))`` per sample, with ``q`` the receiver, ``k = v`` the donor and
    the inner product over all ``F`` features of a sample (``F = C`` for the vectors that code
    mixes); output ``q + lam * (1 - s) * (v - q)``. ``tokens`` is accepted and ignored.
    """

    def forward(self, receiver: torch.Tensor, donor: torch.Tensor) -> torch.Tensor:
        q, v = receiver.flatten(1), donor.flatten(1)
        s = torch.sigmoid((q * v).sum(1) / math.sqrt(q.shape[1]))
        s = s.view(-1, *([1] * (receiver.dim() - 1)))
        return receiver + self.lam * (1.0 - s) * (donor - receiver)


class AddMixture(Mixture):
    """Plain residual fusion: ``x' + lam * tau``."""

    def forward(self, receiver: torch.Tensor, donor: torch.Tensor) -> torch.Tensor:
        return receiver + self.lam * donor


class MSEMixture(Mixture):
    """The paper's ablation: no mixing; L1 becomes the MSE between tau(parent) and child features.

    Footnote 1 of the paper: L1 is the mean over the parent->child points of ``MSE(tau(z~_i), z_i)``.
    """

    mixes = False

    def forward(self, receiver: torch.Tensor, donor: torch.Tensor) -> MixOutput:
        return MixOutput(receiver, F.mse_loss(donor, receiver))


class NoMixture(Mixture):
    """No mixing at all: both streams run as their own networks (a control)."""

    mixes = False

    def forward(self, receiver: torch.Tensor, donor: torch.Tensor) -> torch.Tensor:
        return receiver


class LearnedGateMixture(Mixture):
    """``x' + sigmoid(w) * GA(query=x', source=tau)`` with ``w`` a trained scalar, ``sigmoid(w) = lam`` at
    the start (``lam`` is clipped to [0.01, 0.99] there, so the weight can still move)."""

    def __init__(self, lam: float = 0.6, tokens: str = "auto") -> None:
        super().__init__(lam, tokens)
        start = min(0.99, max(0.01, self.lam))
        self.weight_logit = nn.Parameter(torch.tensor(math.log(start / (1.0 - start))))

    def weight(self) -> torch.Tensor:
        return torch.sigmoid(self.weight_logit)

    def forward(self, receiver: torch.Tensor, donor: torch.Tensor) -> torch.Tensor:
        return receiver + self.weight().to(receiver.dtype) * genetic_attention(receiver, donor, self.tokens)
