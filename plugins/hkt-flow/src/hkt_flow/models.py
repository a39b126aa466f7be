"""Registered RAFT models: the paper's pair and a scaled-down pair that trains on a CPU.

``raft`` (5.3M parameters) is the paper's parent and ``raft_small`` (1.0M) its child. The demo
pair keeps both architectures (separable GRU + convex upsampling vs ConvGRU + bilinear) at a
quarter of the widths, so a few minutes of CPU training show something. Every factory takes
keyword options passed to :class:`hkt_flow.network.RAFT` (``iters``, ``scale``,
``corr_levels``, ``corr_radius``, ``dropout``).
"""

from __future__ import annotations

from typing import Any

from .network import RAFT

#: Width multiplier of the demo pair.
DEMO_SCALE = 0.25


def raft(**options: Any) -> RAFT:
    """RAFT (large): feature/context encoders with residual blocks, separable ConvGRU, convex upsampling."""
    return RAFT("large", **options)


def raft_small(**options: Any) -> RAFT:
    """RAFT-S: bottleneck encoders, ConvGRU, bilinear upsampling (1.0M parameters)."""
    return RAFT("small", **options)


def raft_demo_parent(**options: Any) -> RAFT:
    """RAFT (large architecture) at a quarter of the widths, for CPU demos."""
    options.setdefault("scale", DEMO_SCALE)
    options.setdefault("iters", 4)
    return RAFT("large", **options)


def raft_demo_child(**options: Any) -> RAFT:
    """RAFT-S at a quarter of the widths, for CPU demos."""
    options.setdefault("scale", DEMO_SCALE)
    options.setdefault("iters", 4)
    return RAFT("small", **options)


#: name -> factory, as registered in the ``models`` registry.
MODELS = {
    "raft": raft,
    "raft_small": raft_small,
    "raft_demo_parent": raft_demo_parent,
    "raft_demo_child": raft_demo_child,
}
