"""Optical-flow metrics over valid pixels, as sum-reducible statistics.

The end-point error is the core's :class:`~hkt_core.tasks.metrics.EndPointError`; this module adds the
figures optical-flow papers quote besides it: n-pixel accuracy and KITTI's F1-all. All of them pool
pixels over the whole evaluated set (a sum over batches and processes), not a mean of per-image
means. A prediction may be the final flow or the list of iterates (the last is scored).
Accuracies and F1-all are percentages of the valid pixels.
"""

from __future__ import annotations

import torch

from hkt_core.tasks import metrics as core

from .target import final_flow, split_target


def _errors(prediction, target) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel EPE, valid weights (B, H, W) and the true flow, all float64."""
    flow, valid = split_target(target)
    epe, _ = core.end_point_error(final_flow(prediction), flow)
    return epe, valid.double(), flow.double()


def _percent(stats: torch.Tensor) -> float:
    return float(100 * stats[0] / stats[1]) if stats[1] > 0 else float("nan")


class EndPointError(core.EndPointError):
    """Mean end-point error (pixels) over valid pixels of the final flow; stats = (sum of EPE, valid pixels)."""

    def stats(self, prediction, target) -> torch.Tensor:
        return super().stats(final_flow(prediction), target)


class PixelAccuracy(core.Metric):
    """Percentage of valid pixels whose end-point error is below ``threshold`` pixels."""

    higher_is_better = True

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.name = f"{threshold:g}px"

    def stats(self, prediction, target) -> torch.Tensor:
        epe, valid, _ = _errors(prediction, target)
        return torch.stack([((epe < self.threshold).double() * valid).sum(), valid.sum()])

    def compute(self, stats: torch.Tensor) -> float:
        return _percent(stats)


class F1All(core.Metric):
    """KITTI's F1-all: percentage of valid pixels whose EPE exceeds 3 px AND 5% of the true magnitude."""

    name = "f1_all"
    higher_is_better = False

    def stats(self, prediction, target) -> torch.Tensor:
        epe, valid, flow = _errors(prediction, target)
        magnitude = torch.linalg.vector_norm(flow, dim=1)
        outlier = (epe > 3.0) & (epe > 0.05 * magnitude)
        return torch.stack([(outlier.double() * valid).sum(), valid.sum()])

    def compute(self, stats: torch.Tensor) -> float:
        return _percent(stats)


def flow_metrics() -> list[core.Metric]:
    """Fresh metric objects: EPE (primary), 1/3/5-pixel accuracy, F1-all."""
    return [EndPointError(), PixelAccuracy(1), PixelAccuracy(3), PixelAccuracy(5), F1All()]
