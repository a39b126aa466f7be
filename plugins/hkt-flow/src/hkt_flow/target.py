"""The layout of flow targets shared by the data sets, the losses and the metrics.

A target is the pair ``(flow, valid)``: per sample ``flow`` is ``(2, H, W)`` float32 (u =
horizontal, v = vertical displacement in pixels, from frame 1 to frame 2) and ``valid`` is
``(H, W)`` bool (True where the ground truth holds: KITTI's sparse pixels, Sintel's valid
pixels, non-occluded pixels when a data set is asked to exclude occlusions). Batches collate to
``((B, 2, H, W), (B, H, W))``. This is the core's convention for dense targets (a tensor, or
``(target, valid)``), so the core's regression task and metrics read it too. A plain flow tensor
``(B, 2, H, W)`` counts as valid everywhere.
"""

from __future__ import annotations

from typing import Any

import torch


def make_target(flow: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(flow, valid)`` from a flow ``(..., 2, H, W)`` and an optional mask ``(..., H, W)``."""
    if flow.dim() < 3 or flow.shape[-3] != 2:
        raise ValueError(f"a flow has 2 channels (u, v) before H, W; got shape {tuple(flow.shape)}")
    if valid is None:
        valid = torch.ones(flow.shape[:-3] + flow.shape[-2:], dtype=torch.bool)
    elif tuple(valid.shape) != tuple(flow.shape[:-3] + flow.shape[-2:]):
        raise ValueError(f"validity mask of shape {tuple(valid.shape)} does not match flow {tuple(flow.shape)}")
    return flow, valid.bool()


def split_target(target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(flow (B, 2, H, W), valid (B, H, W) as float 0/1)`` from a batch target."""
    if isinstance(target, (tuple, list)) and len(target) == 2:
        flow, valid = target
    elif isinstance(target, torch.Tensor):
        flow, valid = target, None
    else:
        raise ValueError(f"a flow target is (flow (B, 2, H, W), valid (B, H, W)) or a flow tensor; "
                         f"got {type(target).__name__}")
    if not isinstance(flow, torch.Tensor) or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"a flow target's flow is (B, 2, H, W); got "
                         f"{tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow).__name__}")
    if valid is None:
        return flow, torch.ones_like(flow[:, 0])
    if tuple(valid.shape) != (flow.shape[0], *flow.shape[2:]):
        raise ValueError(f"validity mask of shape {tuple(valid.shape)} does not match flow {tuple(flow.shape)}; "
                         f"expected (B, H, W)")
    return flow, valid.to(flow.dtype)


def final_flow(prediction: Any) -> torch.Tensor:
    """The final flow of a prediction: the tensor itself, or the last of a list of iterates."""
    if isinstance(prediction, torch.Tensor):
        return prediction
    if isinstance(prediction, (list, tuple)) and prediction:
        return prediction[-1]
    raise TypeError(f"a flow prediction is a (B, 2, H, W) tensor or a list of them; got "
                    f"{type(prediction).__name__}")


def iterates(prediction: Any) -> list[torch.Tensor]:
    """The list of flow iterates, last one final.

    A list is taken as it is. A tensor is the final flow; the iterates before it are read from
    its ``flow_iterates`` attribute when present (:meth:`hkt_flow.adapter.RAFTAdapter.prediction`
    attaches them), otherwise it is a sequence of one.
    """
    if isinstance(prediction, torch.Tensor):
        earlier = getattr(prediction, "flow_iterates", None) or ()
        return [*earlier, prediction]
    if isinstance(prediction, (list, tuple)) and prediction:
        return list(prediction)
    raise TypeError(f"a flow prediction is a (B, 2, H, W) tensor or a list of them; got "
                    f"{type(prediction).__name__}")
