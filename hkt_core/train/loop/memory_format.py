"""Channels-last memory format (``--channels-last``) for 2-D image models.

A ``(B, C, H, W)`` tensor in channels-last order stores the channels of a pixel next to each
other, which convolution kernels on GPUs (and oneDNN on CPU) prefer. Only the storage order
changes: shapes, values and ``state_dict`` keys are the same, and checkpoints are written as
ordinary contiguous tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...errors import ConfigError


def has_image_input(input_shapes: Sequence[Sequence[int]]) -> bool:
    """True when some input is a batch of 2-D images ``(B, C, H, W)``."""
    return any(len(shape) == 4 for shape in input_shapes)


def check_channels_last(pair: str, input_shapes: Sequence[Sequence[int]]) -> None:
    """Refuse ``--channels-last`` for a pair without 2-D image inputs (before anything is written)."""
    if not has_image_input(input_shapes):
        shapes = ", ".join(str(list(s)) for s in input_shapes)
        raise ConfigError(f"--channels-last is for 2-D image models with (B, C, H, W) inputs; pair {pair!r} "
                          f"takes {shapes}. Drop the option")


def to_channels_last(module: nn.Module | None) -> nn.Module | None:
    """``module`` with its 4-D parameters and buffers in channels-last order (in place)."""
    if module is not None:
        module.to(memory_format=torch.channels_last)
    return module


def inputs_channels_last(inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Each 4-D input in channels-last order; other inputs unchanged."""
    return tuple(t.contiguous(memory_format=torch.channels_last) if isinstance(t, torch.Tensor) and t.dim() == 4
                 else t for t in inputs)
