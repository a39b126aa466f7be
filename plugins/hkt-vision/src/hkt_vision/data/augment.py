"""Batch augmentation (``DatasetBundle.augment``): random crops with zero padding and flips.

Applied by the trainer to training batches only. Random draws come from the trainer's generator
(on the CPU) so a run is reproducible; the result is moved to the batch's device. Padding is
applied to the normalised batch, so a padded border is the data set's mean, not black.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RandomCropFlip:
    """Shift each sample by up to ``padding`` positions per spatial axis; optionally mirror it.

    Works for signals ``(B, C, L)`` and images ``(B, C, H, W)``; ``flip`` mirrors the last axis
    (horizontal flip) with probability 1/2.
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
            raise ValueError(f"padding = {padding!r} is invalid: an integer >= 0")
        self.padding = padding
        self.flip = bool(flip)

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"

    def __call__(self, inputs: torch.Tensor, target: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if inputs.dim() not in (3, 4):
            raise ValueError(f"RandomCropFlip expects (B, C, L) or (B, C, H, W) batches, got {tuple(inputs.shape)}")
        batch = inputs.shape[0]
        device = inputs.device
        out = inputs
        if self.padding:
            p = self.padding
            spatial = inputs.shape[2:]
            offsets = torch.randint(0, 2 * p + 1, (batch, len(spatial)), generator=generator).to(device)
            padded = F.pad(inputs, (p, p) * len(spatial))
            b = torch.arange(batch, device=device)
            if len(spatial) == 1:
                cols = offsets[:, 0:1] + torch.arange(spatial[0], device=device)           # (B, L)
                out = padded[b[:, None], :, cols].permute(0, 2, 1)                          # (B, C, L)
            else:
                rows = offsets[:, 0:1] + torch.arange(spatial[0], device=device)           # (B, H)
                cols = offsets[:, 1:2] + torch.arange(spatial[1], device=device)           # (B, W)
                out = padded[b[:, None, None], :, rows[:, :, None], cols[:, None, :]]     # (B, H, W, C)
                out = out.permute(0, 3, 1, 2)
            out = out.contiguous()
        if self.flip:
            mirror = (torch.rand(batch, generator=generator) < 0.5).to(device)
            mirror = mirror.reshape(batch, *([1] * (inputs.dim() - 1)))
            out = torch.where(mirror, out.flip(-1), out)
        return out, target
