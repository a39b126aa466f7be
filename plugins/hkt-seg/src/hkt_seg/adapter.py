"""The adapter for the plugin's U-Nets: which blocks 3HKT may align.

The blocks are the encoder levels, the bottleneck, the decoder levels and the head, in the order
data flows through them (see :mod:`hkt_seg.models`). Their names follow the tracer's naming rule
(a module's output is named by its qualified path), so they are valid alignment endpoints.
"""

from __future__ import annotations

from torch import nn

from hkt_core import Adapter

from .models import MODELS, UNet


class UNetAdapter(Adapter):
    """Claims :class:`~hkt_seg.models.UNet` models; declares encoder, bottleneck and decoder blocks."""

    model_classes = (UNet,)
    model_names = tuple(MODELS)

    def declared_blocks(self, model: nn.Module) -> list[str] | None:
        if isinstance(model, UNet):
            return model.block_names()
        return None
