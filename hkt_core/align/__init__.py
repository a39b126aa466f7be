"""Automatic alignment of a parent's blocks to a child's.

Public names: :func:`align` (trace + discover + choose), :class:`Alignment` and
:class:`BlockPair` (the record), :func:`resolve` (names -> fx nodes on a traced graph),
:func:`analyse` (one model's candidate blocks), :func:`plot_alignment`. The rules are written in
:mod:`.blocks` (candidates), :mod:`.score` (pair score) and :mod:`.solve` (choice of N pairs).
"""

from __future__ import annotations

from .api import align, align_blocks, analyse, auto_stage_count
from .blocks import Block, BlockGraph, discover
from .record import FORMAT_VERSION, Alignment, BlockPair
from .resolve import resolve


def plot_alignment(*args, **kwargs):
    """Draw an alignment (see :func:`hkt_core.align.plot.plot_alignment`); needs matplotlib."""
    from .plot import plot_alignment as _plot

    return _plot(*args, **kwargs)


__all__ = ["FORMAT_VERSION", "Alignment", "Block", "BlockGraph", "BlockPair", "align", "align_blocks",
           "analyse", "auto_stage_count", "discover", "plot_alignment", "resolve"]

