"""Genetic Attention (paper Eq. 2): a dissimilarity operator.

The query is the receiving stream's activation; key = value = the donor's transferred activation.
The result is what the donor holds that the receiver does not already perceive::

    alpha = softmax(Q_flat K_flat^T / sqrt(d));   GA = V - reshape(alpha V_flat)

Tensors are channel-first: ``(B, C, *S)`` maps and ``(B, C)`` vectors. The token layout decides
what is a token and what is its feature vector:

- ``spatial``: tokens are the ``N = prod(S)`` positions, features the ``C`` channels, ``d = C``
  (the paper's literal reading). For a vector ``N = 1`` and the term is identically zero, so
  ``spatial`` on a vector raises instead of silently doing nothing.
- ``channel``: tokens are the ``C`` channels, features the ``N`` positions, ``d = N``.
- ``auto``: ``spatial`` when ``N > 1``, else ``channel``.

The attention itself is :func:`torch.nn.functional.scaled_dot_product_attention` (its default
scale is ``1/sqrt(last dim of the query)``, which is exactly ``1/sqrt(d)`` in both layouts). It
is handed contiguous 4-D ``(B, 1, tokens, features)`` tensors, the form its fused kernels accept:
on CPU (float32/float64) the fused flash-attention kernel, on CUDA the flash or memory-efficient
kernel where dtype and head size allow; none of them builds the ``tokens x tokens`` matrix.
Under mixed precision (:mod:`torch.autocast`) the attention still runs in float32; the result has
the inputs' dtype.

:func:`attention_path` selects, for runs recorded before this layout existed, the ``legacy``
path (transposed 3-D views, which always took SDPA's math path and builds the full matrix). The
two agree to float32 rounding (exactly in float64 up to ~1e-15); the choice is part of a run's
identity (``train.fused_attention``) so a resumed run computes what it was started with.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

TOKEN_LAYOUTS = ("auto", "spatial", "channel")
#: How the attention is handed to SDPA: ``fused`` (contiguous 4-D, the default) or ``legacy``.
ATTENTION_PATHS = ("fused", "legacy")
_path = "fused"


def current_attention_path() -> str:
    """The path :func:`genetic_attention` takes now (``fused`` unless :func:`attention_path` says otherwise)."""
    return _path


@contextlib.contextmanager
def attention_path(path: str):
    """Run the enclosed Genetic Attentions on ``path`` (one of :data:`ATTENTION_PATHS`)."""
    global _path
    if path not in ATTENTION_PATHS:
        raise ValueError(f"attention path {path!r} is invalid: must be one of {', '.join(ATTENTION_PATHS)}")
    before, _path = _path, path
    try:
        yield
    finally:
        _path = before


#: A vector point at least this wide gets a cost note in ``hkt align``'s output.
WIDE_VECTOR = 512


def vector_cost(channels: int) -> int:
    """Multiply-adds of Genetic Attention on one ``C``-wide vector, one sample, one direction: on a
    vector the tokens are the ``C`` channels (``d = 1``), so the scores are ``C x C`` (C^2) and the
    weighted sum another C^2, besides a softmax over C^2 entries."""
    return 2 * channels * channels


def wide_vector_notes(pairs, threshold: int = WIDE_VECTOR) -> list[str]:
    """One line per mixing point of ``pairs`` (``BlockPair``-like records; the last pair is the
    predictions) whose value is a vector of at least ``threshold`` channels, with its cost and the
    cheaper choices."""
    notes = []
    for k, pair in enumerate(list(pairs)[:-1]):
        for side in ("parent", "child"):
            shape, kind = getattr(pair, f"{side}_shape"), getattr(pair, f"{side}_kind")
            if kind != "vector" or len(shape) < 2 or shape[-1] < threshold:
                continue
            c = shape[-1]
            notes.append(f"note: point {k + 1} {side} {getattr(pair, side)!r} is a {c}-wide vector: Genetic Attention "
                         f"there costs 2*C^2 = {vector_cost(c) / 1e6:.1f}M multiply-adds per sample and direction "
                         f"(a 64-wide vector: {vector_cost(64) / 1e3:.1f}k); cheaper: --set hkt.mixture=gate or add "
                         f"(O(C)), --set hkt.directions=to_child or to_parent (one side's width only), or a "
                         f"narrower point")
    return notes


def resolve_tokens(tokens: str, positions: int) -> str:
    """The concrete layout (``spatial`` or ``channel``) for ``positions = prod(S)``."""
    if tokens not in TOKEN_LAYOUTS:
        raise ValueError(f"tokens = {tokens!r} is invalid: must be one of {', '.join(TOKEN_LAYOUTS)}")
    if tokens == "auto":
        return "spatial" if positions > 1 else "channel"
    if tokens == "spatial" and positions == 1:
        raise ValueError("tokens = 'spatial' needs a map with more than one position; on a vector "
                         "(B, C) spatial Genetic Attention is identically zero: use 'channel' or 'auto'")
    return tokens


def genetic_attention(query: torch.Tensor, source: torch.Tensor, tokens: str = "auto") -> torch.Tensor:
    """The GA term ``V - reshape(softmax(Q K^T / sqrt(d)) V)`` with ``Q = query``, ``K = V = source``.

    ``query`` is the receiving stream's activation, ``source`` the donor's transferred activation;
    both channel-first with the same shape ``(B, C, *S)`` or ``(B, C)``. Returns a tensor of that
    shape. The mixture adds it to the receiver: ``query + lam * genetic_attention(query, source)``.
    """
    if not isinstance(query, torch.Tensor) or not isinstance(source, torch.Tensor):
        raise TypeError("genetic_attention expects two tensors (query, source)")
    if query.dim() < 2:
        raise ValueError(f"genetic_attention needs channel-first tensors (B, C, *S) or (B, C); "
                         f"got shape {tuple(query.shape)}")
    if query.shape != source.shape:
        raise ValueError(f"genetic_attention: query {tuple(query.shape)} and source {tuple(source.shape)} "
                         f"must have the same shape; transfer the donor to the receiver's shape first")
    batch, channels = query.shape[:2]
    positions = math.prod(query.shape[2:])
    layout = resolve_tokens(tokens, positions)
    # The attention (and its softmax) runs in float32 at least, also under autocast: the result is
    # a difference of two close values, which half precision would mostly round away.
    out_dtype = torch.promote_types(query.dtype, source.dtype)
    work = torch.promote_types(out_dtype, torch.float32)
    device = query.device.type
    exact = torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()
    with exact:
        q = query.reshape(batch, channels, positions).to(work)
        v = source.reshape(batch, channels, positions).to(work)
        if _path == "legacy":
            if layout == "spatial":
                # tokens = positions, features = channels: (B, N, C) views, d = C
                attended = F.scaled_dot_product_attention(q.transpose(1, 2), v.transpose(1, 2), v.transpose(1, 2))
                attended = attended.transpose(1, 2)
            else:
                attended = F.scaled_dot_product_attention(q, v, v)
        elif layout == "spatial":
            # tokens = positions, features = channels: (B, 1, N, C) contiguous, d = C
            qt = q.transpose(1, 2).contiguous().unsqueeze(1)
            vt = v.transpose(1, 2).contiguous().unsqueeze(1)
            attended = F.scaled_dot_product_attention(qt, vt, vt).squeeze(1).transpose(1, 2)
        else:
            # tokens = channels, features = positions: (B, 1, C, N), d = N
            q4, v4 = q.contiguous().unsqueeze(1), v.contiguous().unsqueeze(1)
            attended = F.scaled_dot_product_attention(q4, v4, v4).squeeze(1)
        return (v - attended).reshape(source.shape).to(out_dtype)
