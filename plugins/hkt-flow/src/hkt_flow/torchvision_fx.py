"""torchvision's RAFT with a forward torch.fx can trace, so the Family can train it with HKT.

torchvision's ``RAFT.forward`` checks the input shapes in Python ``if`` statements and keeps the
correlation pyramid as state on ``corr_block``; symbolic tracing stops at the first check, and
no leaf module can hide code that sits in the top-level forward. :class:`TraceableRAFT` is the
same network (a subclass of torchvision's ``RAFT`` holding the very same sub-modules, so its
``state_dict`` has torchvision's keys and it computes the same flows) whose forward passes every
value explicitly and keeps the shape-dependent parts in small stateless leaf modules:

- ``coordinates`` (:class:`CoordinateGrid`): the 1/8-resolution pixel grid of a frame;
- ``correlation`` (:class:`CorrelationPyramid`): torchvision's all-pairs pyramid of the two
  feature maps, returned as values instead of stored on the module;
- ``lookup`` (:class:`CorrelationLookup`): torchvision's radius look-up in those levels;
- ``upsampler`` (:class:`FlowUpsampler`): torchvision's upsampling to full resolution (convex
  mask for the large model, bilinear for the small); its N-th call is the final flow,
  ``upsampler#N``.

The shape checks of torchvision's forward still happen: the pyramid (inside a leaf module) refuses
frames smaller than 128 pixels, and the encoders refuse wrong channel counts.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.optical_flow import RAFT
from torchvision.models.optical_flow._utils import make_coords_grid, upsample_flow
from torchvision.models.optical_flow.raft import CorrBlock


class CoordinateGrid(nn.Module):
    """The (B, 2, H/8, W/8) grid of pixel coordinates (x, y) of a frame's 1/8-resolution map."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        return make_coords_grid(b, h // 8, w // 8).to(image.device)


class CorrelationPyramid(nn.Module):
    """All-pairs correlation of two feature maps, average-pooled ``num_levels - 1`` times."""

    def __init__(self, num_levels: int, radius: int) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.radius = radius

    def forward(self, fmap1: torch.Tensor, fmap2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        block = CorrBlock(num_levels=self.num_levels, radius=self.radius)
        block.build_pyramid(fmap1, fmap2)
        return tuple(block.corr_pyramid)


class CorrelationLookup(nn.Module):
    """Correlation features around the current coordinates, from every pyramid level."""

    def __init__(self, num_levels: int, radius: int) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.radius = radius

    def forward(self, coords: torch.Tensor, *levels: torch.Tensor) -> torch.Tensor:
        block = CorrBlock(num_levels=self.num_levels, radius=self.radius)
        block.corr_pyramid = list(levels)
        return block.index_pyramid(centroids_coords=coords)


class FlowUpsampler(nn.Module):
    """Flow at 1/8 resolution to full resolution (times 8): convex mask when given, else bilinear."""

    def forward(self, flow: torch.Tensor, up_mask: torch.Tensor | None = None) -> torch.Tensor:
        return upsample_flow(flow=flow, up_mask=up_mask)


#: Modules the tracer keeps opaque in a :class:`TraceableRAFT`.
LEAF_MODULES = (CoordinateGrid, CorrelationPyramid, CorrelationLookup, FlowUpsampler)


class TraceableRAFT(RAFT):
    """torchvision's RAFT, sharing ``model``'s sub-modules, with an fx-traceable forward."""

    def __init__(self, model: RAFT) -> None:
        super().__init__(feature_encoder=model.feature_encoder, context_encoder=model.context_encoder,
                         corr_block=model.corr_block, update_block=model.update_block,
                         mask_predictor=model.mask_predictor)
        levels, radius = model.corr_block.num_levels, model.corr_block.radius
        self.coordinates = CoordinateGrid()
        self.correlation = CorrelationPyramid(levels, radius)
        self.lookup = CorrelationLookup(levels, radius)
        self.upsampler = FlowUpsampler()
        hidden = model.update_block.hidden_state_size
        self.split_sizes = [hidden, model.context_encoder.conv.out_channels - hidden]
        if self.split_sizes[1] <= 0:
            raise ValueError(f"the context encoder gives {model.context_encoder.conv.out_channels} channels; it "
                             f"needs more than the hidden state's {hidden}")
        for name in ("hkt_flow_updates", "hkt_model_name"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        self.train(model.training)

    #: Tells the adapter to trace with torch.fx, leaves :data:`LEAF_MODULES`, updates from the model.
    fx_traceable = True

    def forward(self, image1: torch.Tensor, image2: torch.Tensor,
                num_flow_updates: int | None = None) -> list[torch.Tensor]:
        """The list of ``num_flow_updates`` full-resolution flows, the last one final.

        ``None`` (how the engine traces it) uses ``self.hkt_flow_updates`` (12 unless the model
        factory set it), so the traced graph is called like the model, ``graph(image1, image2)``.
        """
        if num_flow_updates is None:
            num_flow_updates = getattr(self, "hkt_flow_updates", 12)
        fmaps = self.feature_encoder(torch.cat([image1, image2], dim=0))
        fmap1, fmap2 = torch.chunk(fmaps, chunks=2, dim=0)
        pyramid = self.correlation(fmap1, fmap2)
        levels = [pyramid[i] for i in range(self.correlation.num_levels)]

        context_out = self.context_encoder(image1)
        hidden_state, context = torch.split(context_out, self.split_sizes, dim=1)
        hidden_state = torch.tanh(hidden_state)
        context = torch.relu(context)

        coords0 = self.coordinates(image1)
        coords1 = coords0
        flow_predictions = []
        for _ in range(num_flow_updates):
            coords1 = coords1.detach()  # as torchvision: no gradient through the coordinates
            corr_features = self.lookup(coords1, *levels)
            flow = coords1 - coords0
            hidden_state, delta_flow = self.update_block(hidden_state, context, corr_features, flow)
            coords1 = coords1 + delta_flow
            if self.mask_predictor is None:
                flow_predictions.append(self.upsampler(coords1 - coords0))
            else:
                flow_predictions.append(self.upsampler(coords1 - coords0, self.mask_predictor(hidden_state)))
        return flow_predictions
