"""Optical-flow metrics over valid pixels, as sum-reducible statistics.

All of them pool pixels over the whole evaluated set (a sum over batches and processes), not a
mean of per-image means. A prediction may be the final flow or the list of iterates (the last
is scored). Accuracies and F1-all are percentages of the valid pixels.
"""

from __future__ import annotations

import torch

from hkt_core.metrics import Metric

from .target import final_flow, split_target


def end_point_error(prediction: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Per-pixel Euclidean distance ``(B, H, W)`` between two flows ``(B, 2, H, W)``."""
    return torch.linalg.vector_norm(prediction - flow, dim=1)


def _epe_and_valid(prediction, target) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flow, valid = split_target(target)
    pred = final_flow(prediction)
    if pred.shape != flow.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match the target flow "
                         f"{tuple(flow.shape)}")
    return end_point_error(pred.double(), flow.double()), valid.double(), flow.double()


class EndPointError(Metric):
    """Mean end-point error (pixels) over valid pixels; stats = (sum of EPE, valid pixels)."""

    name = "epe"
    higher_is_better = False

    def stats(self, prediction, target) -> torch.Tensor:
        epe, valid, _ = _epe_and_valid(prediction, target)
        return torch.stack([(epe * valid).sum(), valid.sum()])

    def compute(self, stats: torch.Tensor) -> float:
        return float(stats[0] / stats[1]) if stats[1] > 0 else float("nan")


class PixelAccuracy(Metric):
    """Percentage of valid pixels whose end-point error is below ``threshold`` pixels."""

    higher_is_better = True

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.name = f"{threshold:g}px"

    def stats(self, prediction, target) -> torch.Tensor:
        epe, valid, _ = _epe_and_valid(prediction, target)
        return torch.stack([((epe < self.threshold).double() * valid).sum(), valid.sum()])

    def compute(self, stats: torch.Tensor) -> float:
        return float(100 * stats[0] / stats[1]) if stats[1] > 0 else float("nan")


class F1All(Metric):
    """KITTI's F1-all: percentage of valid pixels whose EPE exceeds 3 px AND 5% of the true magnitude."""

    name = "f1_all"
    higher_is_better = False

    def stats(self, prediction, target) -> torch.Tensor:
        epe, valid, flow = _epe_and_valid(prediction, target)
        magnitude = torch.linalg.vector_norm(flow, dim=1)
        outlier = (epe > 3.0) & (epe > 0.05 * magnitude)
        return torch.stack([(outlier.double() * valid).sum(), valid.sum()])

    def compute(self, stats: torch.Tensor) -> float:
        return float(100 * stats[0] / stats[1]) if stats[1] > 0 else float("nan")


def flow_metrics() -> list[Metric]:
    """Fresh metric objects: EPE (primary), 1/3/5-pixel accuracy, F1-all."""
    return [EndPointError(), PixelAccuracy(1), PixelAccuracy(3), PixelAccuracy(5), F1All()]
