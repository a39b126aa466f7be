"""Training-time augmentation of flow batches (applied by the trainer to training batches only).

Photometric: brightness, contrast and saturation jitter, the same for both frames with
probability ``1 - asymmetric`` and drawn separately otherwise; then, with probability ``erase``,
a rectangle of frame 2 is filled with its mean colour (RAFT's occlusion "eraser"; the flow is
unchanged). Spatial: horizontal flips (u changes sign) and vertical flips (v changes sign),
applied to both frames and the target so the ground truth stays exact.
"""

from __future__ import annotations

import torch

from hkt_core import ConfigError


def _jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation factors ``(B, 3)`` applied to ``(B, 3, H, W)`` in [0, 255]."""
    b, c, s = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    x = images * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * s + grey
    return x.clamp(0, 255)


class FlowAugmentation:
    """``augment((image1, image2), target, generator) -> ((image1, image2), target)`` on batches."""

    def __init__(self, jitter: float = 0.4, asymmetric: float = 0.2, erase: float = 0.5,
                 hflip: float = 0.5, vflip: float = 0.1) -> None:
        for name, p in (("asymmetric", asymmetric), ("erase", erase), ("hflip", hflip), ("vflip", vflip)):
            if not 0 <= p <= 1:
                raise ConfigError(f"{name} = {p!r}: a probability in [0, 1]")
        if not 0 <= jitter < 1:
            raise ConfigError(f"jitter = {jitter!r}: a factor range half-width in [0, 1)")
        self.jitter, self.asymmetric, self.erase = jitter, asymmetric, erase
        self.hflip, self.vflip = hflip, vflip

    def __repr__(self) -> str:
        return (f"FlowAugmentation(jitter={self.jitter}, asymmetric={self.asymmetric}, erase={self.erase}, "
                f"hflip={self.hflip}, vflip={self.vflip})")

    def __call__(self, inputs, target, generator: torch.Generator | None = None):
        from .target import split_target

        image1, image2 = inputs
        flow, _ = split_target(target)
        valid = target[1] if isinstance(target, (tuple, list)) else None
        n = image1.shape[0]
        rand = lambda *shape: torch.rand(*shape, generator=generator).to(image1.device)  # noqa: E731
        f1 = 1 + self.jitter * (2 * rand(n, 3) - 1)
        f2 = 1 + self.jitter * (2 * rand(n, 3) - 1)
        same = (rand(n, 1) >= self.asymmetric).to(f1.dtype)
        image1 = _jitter(image1, f1)
        image2 = _jitter(image2, same * f1 + (1 - same) * f2)
        image2 = self._erase(image2, rand)
        flow = flow.clone()
        valid = None if valid is None else valid.clone()
        for dim, channel, p in ((-1, 0, self.hflip), (-2, 1, self.vflip)):
            flip = rand(n) < p
            if flip.any():
                idx = flip.nonzero().flatten()
                image1[idx] = image1[idx].flip(dim)
                image2[idx] = image2[idx].flip(dim)
                f = flow[idx].flip(dim)
                f[:, channel] = -f[:, channel]
                flow[idx] = f
                if valid is not None:
                    valid[idx] = valid[idx].flip(dim)
        return (image1, image2), (flow if valid is None else (flow, valid))

    def _erase(self, images: torch.Tensor, rand) -> torch.Tensor:
        n, _, h, w = images.shape
        images = images.clone()
        which = rand(n) < self.erase
        sizes = rand(n, 2)
        corners = rand(n, 2)
        for i in which.nonzero().flatten().tolist():
            eh, ew = max(1, int(h * (0.1 + 0.2 * sizes[i, 0]))), max(1, int(w * (0.1 + 0.2 * sizes[i, 1])))
            y0, x0 = int((h - eh) * corners[i, 0]), int((w - ew) * corners[i, 1])
            colour = images[i].mean(dim=(1, 2), keepdim=True)
            images[i, :, y0:y0 + eh, x0:x0 + ew] = colour
        return images
