"""Mixed precision for a training step: autocast for the forwards, a gradient scaler for fp16.

``train.precision`` (``--precision``) is one of:

- ``fp32``: everything in float32 (the default; no autocast).
- ``bf16``: the child's and the parent's forwards and the ETM operators run under
  :func:`torch.autocast` with ``bfloat16`` (on CPU and on CUDA). bfloat16 has float32's exponent
  range, so no loss scaling is needed.
- ``fp16``: the same with ``float16``, plus a :class:`torch.amp.GradScaler` that scales the loss
  before backward and skips a step whose gradients overflowed.

What stays in float32 whatever the setting: the weights (autocast casts per operation, so the
optimiser, the checkpoints and the exported child are float32, and a run resumes exactly), the
softmax of Genetic Attention (:func:`hkt_core.genetic_attention` computes the attention in float32),
the losses autocast keeps in float32 (cross-entropy, KL, MSE), and evaluation: validation and test
metrics are those of the float32 network that is saved. The frozen parent runs in reduced
precision under ``no_grad`` like any other forward inside the autocast region.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

#: The accepted values of ``train.precision``.
PRECISIONS = ("fp32", "bf16", "fp16")

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None for fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r} is invalid: must be one of {', '.join(PRECISIONS)}")
    return _DTYPES.get(precision)


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast region of ``precision`` on ``device`` (a no-op context for fp32)."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class MixedPrecision:
    """Forward under autocast, backward and optimiser step through a gradient scaler when fp16.

    Use::

        amp = MixedPrecision("bf16", device)
        with amp.autocast():
            loss = compute_loss(...)
        amp.step(loss, optimizer, parameters, grad_clip=1.0)

    :meth:`state_dict` is the scaler's state (plain numbers, stored in ``state.json``), so an fp16
    run resumes with the loss scale it had.
    """

    def __init__(self, precision: str, device: torch.device | str) -> None:
        self.precision = precision
        self.device = torch.device(device)
        self.dtype = autocast_dtype(precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.precision, self.device)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters: Iterable[nn.Parameter],
             grad_clip: float = 0.0) -> None:
        """Backward ``loss`` and step ``optimizer``; gradients are clipped (unscaled) when ``grad_clip > 0``."""
        if self.scaler is None:
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(list(parameters), grad_clip)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if grad_clip > 0:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(list(parameters), grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return dict(self.scaler.state_dict()) if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))
