"""The inherited layer: one shared low-rank down projection, M up heads and a gate.

A dense weight ``W`` (``d_out x d_in``; a convolution kernel read as ``out x (in*k*k)``) is
factorised by SVD, ``W = U S V^T``. The rank-``r`` truncation is split into *balanced* factors,
``down = sqrt(S_r) V_r^T`` and ``up = U_r sqrt(S_r)``, so neither factor carries all the scale and
both train at comparable rates. Every head starts as the same ``up``; the gate mixes heads with
softmax weights that sum to one, so at initialisation

    y = sum_m g_m(x) up_m down x = up down x = W_r x      for any gate value g(x),

i.e. the layer reproduces the rank-``r`` weight exactly (no ``1/M`` factor anywhere). The gate is
initialised randomly (``nn.Linear``'s default): were it uniform, all heads would receive identical
gradients and stay copies of each other forever.

The gate reads the down-projected features: for a linear layer, each row of the input (a linear
layer maps rows independently, and so does this one); for a convolution, the features averaged
over the spatial positions, one gate per sample.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hkt_core import ConfigError

#: The dense layer types :func:`compress_layer` accepts.
COMPRESSIBLE = (nn.Linear, nn.Conv2d)


#: Below this many elements an SVD runs on one thread: threads buy nothing at this size, and on a
#: busy machine their spin-waiting made a 32 x 288 SVD take seconds instead of a millisecond.
SINGLE_THREAD_SVD_ELEMENTS = 1 << 20


@contextlib.contextmanager
def _svd_threads(matrix: torch.Tensor) -> Iterator[None]:
    before = torch.get_num_threads()
    small = matrix.numel() < SINGLE_THREAD_SVD_ELEMENTS and before > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The thin SVD ``U, S, V^T`` of ``matrix`` in float64."""
    matrix = matrix.detach().to(torch.float64)
    with _svd_threads(matrix):
        return torch.linalg.svd(matrix, full_matrices=False)


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as the ``d_out x d_in`` matrix the SVD factorises (a view, not a copy)."""
    _check_compressible(layer)
    return layer.weight.reshape(layer.weight.shape[0], -1)


def singular_values(layer: nn.Module) -> torch.Tensor:
    """The weight matrix's singular values (float64, descending)."""
    matrix = weight_matrix(layer).detach().to(torch.float64)
    with _svd_threads(matrix):
        return torch.linalg.svdvals(matrix)


def inherited_parameter_count(d_in: int, d_out: int, rank: int, heads: int, bias: bool) -> int:
    """``r*d_in + M*r*d_out`` (factors) ``+ r*M + M`` (gate) ``+ d_out`` (bias, if any)."""
    return rank * d_in + heads * rank * d_out + rank * heads + heads + (d_out if bias else 0)


class InheritedLayer(nn.Module):
    """Shared parts of :class:`InheritedLinear` and :class:`InheritedConv2d`.

    Parameters: ``down`` (the rank-``r`` projection, a module), ``heads`` (``M x d_out x r``, the
    up projections stacked), ``gate`` (``nn.Linear(r, M)``) and ``bias`` (the replaced layer's).
    """

    down: nn.Module

    def __init__(self, d_out: int, rank: int, heads: int, bias: bool, device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.rank = rank
        self.num_heads = heads
        self.heads = nn.Parameter(torch.empty(heads, d_out, rank, **factory))
        self.gate = nn.Linear(rank, heads, **factory)
        self.bias = nn.Parameter(torch.zeros(d_out, **factory)) if bias else None

    @property
    def d_out(self) -> int:
        return self.heads.shape[1]

    def gate_weights(self, pooled: torch.Tensor) -> torch.Tensor:
        """Softmax over heads of the gate's logits for pooled down-projected features."""
        return torch.softmax(self.gate(pooled), dim=-1)

    def effective_matrix(self, gates: torch.Tensor | None = None) -> torch.Tensor:
        """``(sum_m g_m up_m) @ down`` as a ``d_out x d_in`` matrix; ``gates`` defaults to uniform."""
        if gates is None:
            gates = torch.full((self.num_heads,), 1.0 / self.num_heads, dtype=self.heads.dtype,
                               device=self.heads.device)
        up = torch.einsum("m,mor->or", gates.to(self.heads.dtype), self.heads)
        return up @ self.down.weight.reshape(self.rank, -1)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, heads={self.num_heads}, bias={self.bias is not None}"


class InheritedLinear(InheritedLayer):
    """Replaces ``nn.Linear(d_in, d_out)``: called on ``(..., d_in)``, returns ``(..., d_out)``."""

    def __init__(self, in_features: int, out_features: int, rank: int, heads: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(out_features, rank, heads, bias, device=device, dtype=dtype)
        self.in_features = in_features
        self.out_features = out_features
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        h = self.down(input)                                      # (..., r)
        g = self.gate_weights(h)                                  # (..., M)
        every_head = F.linear(h, self.heads.reshape(-1, self.rank))  # (..., M*d_out)
        every_head = every_head.unflatten(-1, (self.num_heads, self.out_features))
        out = (g.unsqueeze(-1) * every_head).sum(dim=-2)
        if self.bias is not None:
            out = out + self.bias
        return out

    def effective_weight(self, gates: torch.Tensor | None = None) -> torch.Tensor:
        """The dense weight this layer applies for a gate vector (``d_out x d_in``)."""
        return self.effective_matrix(gates)


class InheritedConv2d(InheritedLayer):
    """Replaces ``nn.Conv2d`` (groups=1): the down projection is a k x k convolution with ``r``
    outputs and the replaced layer's stride, padding, dilation and padding mode; each head is a
    1x1 convolution ``r -> out``. Called on ``(B, C, H, W)`` or ``(C, H, W)`` like the original."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, heads: int, *,
                 stride=1, padding=0, dilation=1, padding_mode: str = "zeros", bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(out_channels, rank, heads, bias, device=device, dtype=dtype)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.down = nn.Conv2d(in_channels, rank, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, bias=False, padding_mode=padding_mode,
                              device=device, dtype=dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        h = self.down(input)                                      # (..., r, H, W)
        g = self.gate_weights(h.mean(dim=(-2, -1)))               # (..., M), one gate per sample
        # The gate is constant over positions, so mixing the heads' weights first is exact and
        # costs one 1x1 convolution instead of M.
        mixed = torch.einsum("...m,mor->...or", g, self.heads)    # (..., out, r)
        out = torch.matmul(mixed, h.flatten(-2)).unflatten(-1, h.shape[-2:])
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out

    def effective_weight(self, gates: torch.Tensor | None = None) -> torch.Tensor:
        """The dense kernel this layer applies for a gate vector (``out x in x k x k``)."""
        return self.effective_matrix(gates).reshape(self.out_channels, *self.down.weight.shape[1:])


def _check_compressible(layer: nn.Module) -> None:
    if not isinstance(layer, COMPRESSIBLE):
        raise ConfigError(f"cannot compress a {type(layer).__name__}: InherNet compresses "
                          "nn.Linear and nn.Conv2d layers")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ConfigError(f"cannot compress a grouped convolution (groups={layer.groups}): "
                          "only groups=1 convolutions are factorised")
    if isinstance(layer.weight, nn.parameter.UninitializedParameter):
        raise ConfigError(f"cannot compress an uninitialised lazy {type(layer).__name__}: "
                          "run one forward pass first")


def _check_rank_heads(rank: int, heads: int, full_rank: int) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= full_rank:
        raise ConfigError(f"rank must be an integer from 1 to {full_rank} (the weight's full rank "
                          f"min(d_out, d_in)), got {rank!r}")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ConfigError(f"heads must be an integer >= 1, got {heads!r}")


def compress_layer(layer: nn.Module, rank: int, heads: int) -> InheritedLayer:
    """The inherited replacement for ``layer`` (``nn.Linear`` or ``nn.Conv2d`` with groups=1).

    Balanced rank-``rank`` SVD factors, ``heads`` identical up heads, a random gate and the
    layer's bias: its output equals the layer's with the rank-``rank`` weight, whatever the gate.
    Raises :class:`~hkt_core.errors.ConfigError` for other layers or a rank outside ``1..min(d_out, d_in)``.
    """
    _check_compressible(layer)
    matrix = weight_matrix(layer)
    _check_rank_heads(rank, heads, min(matrix.shape))
    u, s, vh = svd(matrix)
    return _from_svd(layer, u, s, vh, rank, heads)


def _from_svd(layer: nn.Module, u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int,
              heads: int) -> InheritedLayer:
    """Build the inherited layer from a precomputed float64 SVD of ``weight_matrix(layer)``."""
    weight = layer.weight
    factory = {"device": weight.device, "dtype": weight.dtype}
    has_bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        new: InheritedLayer = InheritedLinear(layer.in_features, layer.out_features, rank, heads,
                                              bias=has_bias, **factory)
    else:
        new = InheritedConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, rank, heads,
                              stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                              padding_mode=layer.padding_mode, bias=has_bias, **factory)
    root = s[:rank].sqrt()
    down = root[:, None] * vh[:rank]                 # sqrt(S_r) V_r^T, (r, d_in)
    up = u[:, :rank] * root[None, :]                 # U_r sqrt(S_r),   (d_out, r)
    with torch.no_grad():
        new.down.weight.copy_(down.reshape(new.down.weight.shape))
        new.heads.copy_(up.expand(heads, *up.shape))
        if has_bias:
            new.bias.copy_(layer.bias)
    new.requires_grad_(weight.requires_grad)  # a frozen layer's replacement starts frozen too
    new.train(layer.training)
    return new


def max_profitable_rank(d_in: int, d_out: int, heads: int) -> int:
    """The largest rank whose inherited layer has fewer weights than the dense one (0 if none)."""
    per_rank = d_in + heads * d_out + heads
    return max(0, min(min(d_in, d_out), (d_out * d_in - heads - 1) // per_rank))
