"""Metrics as sum-reducible statistics, so they add up across batches and across processes.

A metric turns one batch into a vector of sums (``stats``); the value is computed from the summed
vector (``compute``). Accuracy is (correct, count); mean Dice is per-class (intersection, sizes).
This makes distributed reduction an ``all_reduce(SUM)`` of one tensor.
"""

from __future__ import annotations

import torch


class Metric:
    """Base class. ``name`` is the key in metrics.jsonl; ``higher_is_better`` its direction."""

    name: str = "metric"
    higher_is_better: bool = True

    def stats(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """A 1-D float64 tensor of sums for this batch."""
        raise NotImplementedError

    def compute(self, stats: torch.Tensor) -> float:
        raise NotImplementedError


class MetricAccumulator:
    """Sums ``stats`` of several metrics over batches; ``values()`` computes each metric."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = list(metrics)
        self.totals: list[torch.Tensor | None] = [None] * len(self.metrics)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        with torch.no_grad():
            for i, metric in enumerate(self.metrics):
                s = metric.stats(prediction, target).detach().to("cpu", torch.float64)
                self.totals[i] = s if self.totals[i] is None else self.totals[i] + s

    def reduce(self, reducer) -> None:
        """Combine with other processes: ``reducer(tensor) -> tensor`` sums across ranks."""
        self.totals = [None if t is None else reducer(t) for t in self.totals]

    def values(self) -> dict[str, float]:
        return {m.name: m.compute(t) for m, t in zip(self.metrics, self.totals) if t is not None}


# -- built-in metrics --------------------------------------------------------------------------

def _valid_and_target(target) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A dense target is a tensor, or ``(target, valid)`` with a boolean mask of valid pixels."""
    if isinstance(target, (tuple, list)):
        if len(target) != 2:
            raise ValueError(f"a dense target is a tensor or (target, valid_mask); got {len(target)} items")
        return target[0], target[1]
    return target, None


def _check_class_target(metric: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.dim() < 2:
        raise ValueError(f"{metric}: expected class scores of shape (B, num_classes, ...), "
                         f"got {tuple(prediction.shape)}")
    expected = (prediction.shape[0], *prediction.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{metric}: expected class-index targets of shape {expected} for predictions "
                         f"{tuple(prediction.shape)}, got {tuple(target.shape)}")


class Accuracy(Metric):
    """Fraction of correct arg-max predictions; stats = (correct, count). Also per pixel for maps."""

    name = "accuracy"
    higher_is_better = True

    def __init__(self, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index

    def stats(self, prediction, target):
        _check_class_target(self.name, prediction, target)
        hits = prediction.argmax(dim=1) == target
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            return torch.tensor([float((hits & keep).sum()), float(keep.sum())], dtype=torch.float64)
        return torch.tensor([float(hits.sum()), float(target.numel())], dtype=torch.float64)

    def compute(self, stats):
        return float(stats[0] / stats[1]) if stats[1] > 0 else float("nan")


class ErrorRate(Accuracy):
    """1 - accuracy: the figure classification papers quote as 'error'."""

    name = "error"
    higher_is_better = False

    def compute(self, stats):
        return 1.0 - super().compute(stats)


class MeanAbsoluteError(Metric):
    """Mean absolute error over every element of the valid pixels; stats = (sum |e|, elements)."""

    name = "mae"
    higher_is_better = False

    def stats(self, prediction, target):
        target, valid = _valid_and_target(target)
        _check_same_shape(self.name, prediction, target)
        err = (prediction.detach().double() - target.double()).abs()
        if valid is not None:
            mask = broadcast_valid(valid, err)
            return torch.stack([(err * mask).sum(), mask.sum()]).to(torch.float64)
        return torch.tensor([float(err.sum()), float(err.numel())], dtype=torch.float64)

    def compute(self, stats):
        return float(stats[0] / stats[1]) if stats[1] > 0 else float("nan")


class EndPointError(Metric):
    """End-point error: the Euclidean norm over the channel dimension (the flow vector), averaged
    over valid pixels; stats = (sum of norms, valid pixels). For vectors (B, C) it is the mean
    Euclidean distance per sample."""

    name = "epe"
    higher_is_better = False

    def stats(self, prediction, target):
        target, valid = _valid_and_target(target)
        _check_same_shape(self.name, prediction, target)
        norms = (prediction.detach().double() - target.double()).norm(dim=1)
        if valid is not None:
            mask = valid.to(norms.dtype).reshape(norms.shape) if valid.numel() == norms.numel() else None
            if mask is None:
                raise ValueError(f"{self.name}: valid mask of shape {tuple(valid.shape)} does not match "
                                 f"the pixels {tuple(norms.shape)}")
            return torch.stack([(norms * mask).sum(), mask.sum()]).to(torch.float64)
        return torch.tensor([float(norms.sum()), float(norms.numel())], dtype=torch.float64)

    def compute(self, stats):
        return float(stats[0] / stats[1]) if stats[1] > 0 else float("nan")


def _check_same_shape(metric: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
    if tuple(prediction.shape) != tuple(target.shape):
        raise ValueError(f"{metric}: prediction has shape {tuple(prediction.shape)} but the target has "
                         f"{tuple(target.shape)}; they must match")


def broadcast_valid(valid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B, *S) or (B, 1, *S) mask expanded over the channel dimension of ``like`` (B, C, *S)."""
    mask = valid.to(like.dtype)
    if mask.dim() == like.dim() - 1:
        mask = mask.unsqueeze(1)
    try:
        return mask.expand_as(like)
    except RuntimeError:
        raise ValueError(f"valid mask of shape {tuple(valid.shape)} does not fit a prediction of shape "
                         f"{tuple(like.shape)}; expected (B, *S) or (B, 1, *S)") from None


class _PerClassOverlap(Metric):
    """Per-class (intersection, predicted, true) pixel counts of arg-max masks, summed over the data
    set (not averaged per image), so the value is exact under any batching and across processes."""

    def __init__(self, num_classes: int | None = None, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def stats(self, prediction, target):
        _check_class_target(self.name, prediction, target)
        k = self.num_classes or prediction.shape[1]
        pred = prediction.argmax(dim=1).reshape(-1)
        true = target.reshape(-1).long()
        if self.ignore_index is not None:
            keep = true != self.ignore_index
            pred, true = pred[keep], true[keep]
        if true.numel() and (true.min() < 0 or true.max() >= k):
            raise ValueError(f"{self.name}: target class indices must lie in [0, {k - 1}]; found "
                             f"{int(true.min())}..{int(true.max())}")
        inter = torch.bincount(true[pred == true], minlength=k)[:k]
        npred = torch.bincount(pred, minlength=k)[:k]
        ntrue = torch.bincount(true, minlength=k)[:k]
        return torch.cat([inter, npred, ntrue]).to(torch.float64)

    def _split(self, stats):
        k = stats.numel() // 3
        return stats[:k], stats[k:2 * k], stats[2 * k:]


class Dice(_PerClassOverlap):
    """Mean Dice over the classes present (in prediction or truth): 2|A∩B| / (|A| + |B|)."""

    name = "dice"
    higher_is_better = True

    def compute(self, stats):
        inter, npred, ntrue = self._split(stats)
        denom = npred + ntrue
        present = denom > 0
        return float((2 * inter[present] / denom[present]).mean()) if present.any() else float("nan")


class IoU(_PerClassOverlap):
    """Mean intersection over union over the classes present: |A∩B| / |A∪B|."""

    name = "iou"
    higher_is_better = True

    def compute(self, stats):
        inter, npred, ntrue = self._split(stats)
        union = npred + ntrue - inter
        present = union > 0
        return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


#: The built-in metrics by registered name (factories, so every run gets fresh objects).
BUILTIN_METRICS: dict[str, type[Metric]] = {
    "accuracy": Accuracy,
    "error": ErrorRate,
    "mae": MeanAbsoluteError,
    "epe": EndPointError,
    "dice": Dice,
    "iou": IoU,
}
