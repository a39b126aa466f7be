"""Dice and IoU as sum-reducible statistics.

Each metric turns a batch into per-class sums — intersection ``|P_c & G_c|``, predicted pixels
``|P_c|`` and true pixels ``|G_c|`` — so the values are *global*: computed once from the sums over
every pixel of the evaluated set (and over every process), not averaged per image. That is the
"global Dice" LiTS reports. Pixels whose target equals ``ignore_index`` count nowhere.

A class that appears neither in the prediction nor in the target has no defined Dice; it is left
out of the mean (and a single-class metric reports NaN).
"""

from __future__ import annotations

import math

import torch

from hkt_core.metrics import Metric


def check_segmentation_pair(prediction: torch.Tensor, target: torch.Tensor,
                            ignore_index: int | None) -> torch.Tensor:
    """Validate logits (B, C, H, W) against class indices (B, H, W); return the valid-pixel mask."""
    if prediction.dim() != 4:
        raise ValueError(f"segmentation prediction must be logits of shape (B, C, H, W), "
                         f"got shape {tuple(prediction.shape)}")
    if target.dim() != 3 or target.shape[0] != prediction.shape[0] or target.shape[1:] != prediction.shape[2:]:
        raise ValueError(f"segmentation target must be class indices of shape (B, H, W) = "
                         f"{(prediction.shape[0], *prediction.shape[2:])} to match the prediction, "
                         f"got shape {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"segmentation target must hold integer class indices, got dtype {target.dtype}")
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    classes = prediction.shape[1]
    bad = valid & ((target < 0) | (target >= classes))
    if bool(bad.any()):
        values = sorted({int(v) for v in target[bad].unique()[:5]})
        allowed = f"0..{classes - 1}" + ("" if ignore_index is None else f" or the ignore index {ignore_index}")
        raise ValueError(f"segmentation target holds class index(es) {values} but the prediction has "
                         f"{classes} classes: allowed {allowed}")
    return valid


def confusion_sums(prediction: torch.Tensor, target: torch.Tensor,
                   ignore_index: int | None) -> torch.Tensor:
    """(3, C) float64: per-class intersection, predicted count, target count over valid pixels."""
    valid = check_segmentation_pair(prediction, target, ignore_index)
    classes = prediction.shape[1]
    predicted = prediction.argmax(dim=1)[valid]
    truth = target[valid].long()
    p = torch.bincount(predicted, minlength=classes)
    t = torch.bincount(truth, minlength=classes)
    i = torch.bincount(predicted[predicted == truth], minlength=classes)
    return torch.stack([i, p, t]).to(torch.float64)


def dice_per_class(sums: torch.Tensor) -> list[float]:
    """2|P&G| / (|P| + |G|) per class; NaN where the class is absent from both."""
    i, p, t = sums.view(3, -1)
    return [2 * float(a) / float(b + c) if float(b + c) > 0 else math.nan for a, b, c in zip(i, p, t)]


def iou_per_class(sums: torch.Tensor) -> list[float]:
    """|P&G| / |P|G| per class; NaN where the class is absent from both."""
    i, p, t = sums.view(3, -1)
    return [float(a) / float(b + c - a) if float(b + c - a) > 0 else math.nan for a, b, c in zip(i, p, t)]


def _mean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan


class _ClassSumsMetric(Metric):
    def __init__(self, ignore_index: int | None = None, include_background: bool = False) -> None:
        self.ignore_index = ignore_index
        self.include_background = include_background

    def stats(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return confusion_sums(prediction, target, self.ignore_index).flatten()

    def _classes(self, values: list[float]) -> list[float]:
        return values if self.include_background or len(values) == 1 else values[1:]


class MeanDice(_ClassSumsMetric):
    """Global mean Dice over the classes (background, class 0, left out unless asked for)."""

    name = "dice"
    higher_is_better = True

    def compute(self, stats: torch.Tensor) -> float:
        return _mean(self._classes(dice_per_class(stats)))


class MeanIoU(_ClassSumsMetric):
    """Global mean intersection-over-union (Jaccard) over the classes, background as for Dice."""

    name = "iou"
    higher_is_better = True

    def compute(self, stats: torch.Tensor) -> float:
        return _mean(self._classes(iou_per_class(stats)))


class ClassDice(Metric):
    """Global Dice of one class, reported as ``dice_<name>``."""

    higher_is_better = True

    def __init__(self, index: int, label: str | None = None, ignore_index: int | None = None) -> None:
        if not isinstance(index, int) or index < 0:
            raise ValueError(f"ClassDice index = {index!r} is invalid: a class index >= 0")
        self.index = index
        self.ignore_index = ignore_index
        self.name = f"dice_{label if label is not None else index}"

    def stats(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.index >= prediction.shape[1]:
            raise ValueError(f"{self.name}: class {self.index} does not exist, the prediction has "
                             f"{prediction.shape[1]} classes")
        return confusion_sums(prediction, target, self.ignore_index)[:, self.index]

    def compute(self, stats: torch.Tensor) -> float:
        return dice_per_class(stats.view(3, 1))[0]


class PixelAccuracy(Metric):
    """Fraction of valid pixels whose predicted class is right."""

    name = "pixel_accuracy"
    higher_is_better = True

    def __init__(self, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index

    def stats(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = check_segmentation_pair(prediction, target, self.ignore_index)
        correct = (prediction.argmax(dim=1) == target) & valid
        return torch.tensor([float(correct.sum()), float(valid.sum())], dtype=torch.float64)

    def compute(self, stats: torch.Tensor) -> float:
        return float(stats[0] / stats[1]) if stats[1] > 0 else math.nan
