"""Metrics as sum-reducible statistics, so they add up across batches and across processes.

A metric turns one batch into a vector of sums (``stats``); the value is computed from the summed
vector (``compute``). Accuracy is (correct, count); mean Dice is per-class (intersection, predicted, true).
This makes distributed reduction an ``all_reduce(SUM)`` of one tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from .losses import broadcast_valid, check_class_target


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

def dense_target(target) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(target, valid)`` of a dense target: a tensor (valid everywhere: None), or the pair
    ``(target, valid)`` with a (B, *S) mask of valid pixels."""
    if isinstance(target, (tuple, list)):
        if len(target) != 2:
            raise ValueError(f"a dense target is a tensor or (target, valid_mask); got {len(target)} items")
        return target[0], target[1]
    return target, None


def _fraction(stats: torch.Tensor, scale: float = 1.0) -> float:
    return float(scale * stats[0] / stats[1]) if stats[1] > 0 else float("nan")


class Accuracy(Metric):
    """Fraction of correct arg-max predictions over the counted samples (or pixels, for maps);
    targets equal to ``ignore_index`` are not counted. stats = (correct, counted)."""

    name = "accuracy"
    higher_is_better = True

    def __init__(self, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index

    def stats(self, prediction, target):
        valid = check_class_target(self.name, prediction, target, self.ignore_index)
        hits = (prediction.argmax(dim=1) == target) & valid
        return torch.tensor([float(hits.sum()), float(valid.sum())], dtype=torch.float64)

    def compute(self, stats):
        return _fraction(stats)


class ErrorRate(Accuracy):
    """1 - accuracy: the figure classification papers quote as 'error'."""

    name = "error"
    higher_is_better = False

    def compute(self, stats):
        return 1.0 - super().compute(stats)


def _check_same_shape(metric: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
    if tuple(prediction.shape) != tuple(target.shape):
        raise ValueError(f"{metric}: prediction shape {tuple(prediction.shape)} does not match the target "
                         f"shape {tuple(target.shape)}; they must match")


def _valid_sum(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(sum of ``values`` over valid elements, number of valid elements) as float64."""
    if valid is None:
        return torch.tensor([float(values.sum()), float(values.numel())], dtype=torch.float64)
    mask = valid.to(values.dtype)
    return torch.stack([(values * mask).sum(), mask.sum()]).to(torch.float64)


class MeanAbsoluteError(Metric):
    """Mean absolute error over every element of the valid pixels; stats = (sum |e|, elements)."""

    name = "mae"
    higher_is_better = False

    def stats(self, prediction, target):
        target, valid = dense_target(target)
        _check_same_shape(self.name, prediction, target)
        err = (prediction.detach().double() - target.double()).abs()
        return _valid_sum(err, None if valid is None else broadcast_valid(valid, err))

    def compute(self, stats):
        return _fraction(stats)


def end_point_error(prediction: torch.Tensor, target) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-pixel end-point error (B, *S) in float64: the Euclidean norm over the channel dim of
    ``prediction - target``, and the (B, *S) valid mask of a ``(target, valid)`` target (or None)."""
    target, valid = dense_target(target)
    _check_same_shape("epe", prediction, target)
    norms = (prediction.detach().double() - target.double()).norm(dim=1)
    if valid is not None and valid.numel() != norms.numel():
        raise ValueError(f"epe: valid mask of shape {tuple(valid.shape)} does not match the pixels "
                         f"{tuple(norms.shape)}")
    return norms, None if valid is None else valid.reshape(norms.shape)


class EndPointError(Metric):
    """End-point error: the Euclidean norm over the channel dimension (the flow vector), averaged
    over valid pixels; stats = (sum of norms, valid pixels). For vectors (B, C) it is the mean
    Euclidean distance per sample."""

    name = "epe"
    higher_is_better = False

    def stats(self, prediction, target):
        return _valid_sum(*end_point_error(prediction, target))

    def compute(self, stats):
        return _fraction(stats)


def class_overlap(prediction: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None,
                  where: str = "segmentation") -> torch.Tensor:
    """(3, K) float64: per class, the pixels of (intersection, predicted, true) of the arg-max masks,
    counted over the pixels whose target is not ``ignore_index``."""
    valid = check_class_target(where, prediction, target, ignore_index)
    k = prediction.shape[1]
    predicted = prediction.argmax(dim=1)[valid]
    true = target[valid].long()
    inter = torch.bincount(true[predicted == true], minlength=k)
    return torch.stack([inter, torch.bincount(predicted, minlength=k), torch.bincount(true, minlength=k)]
                       ).to(torch.float64)


def dice_per_class(overlap: torch.Tensor) -> torch.Tensor:
    """2|P&G| / (|P| + |G|) per class from :func:`class_overlap` sums; NaN where a class is absent
    from both prediction and truth."""
    inter, predicted, true = overlap.view(3, -1)
    sizes = predicted + true
    return torch.where(sizes > 0, 2 * inter / sizes.clamp_min(1), torch.full_like(sizes, float("nan")))


def iou_per_class(overlap: torch.Tensor) -> torch.Tensor:
    """|P&G| / |P|G| per class from :func:`class_overlap` sums; NaN where a class is absent from both."""
    inter, predicted, true = overlap.view(3, -1)
    union = predicted + true - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


class _MeanOverClasses(Metric):
    """Per-class pixel counts summed over the data set (not averaged per image), so the value is
    exact under any batching and across processes; the mean is over the classes present (in the
    prediction or the truth). Class 0 is the background and is left out of the mean unless
    ``include_background`` (then the metric's name ends in ``_all``); a single class is kept."""

    higher_is_better = True
    per_class = staticmethod(dice_per_class)

    def __init__(self, *, ignore_index: int | None = None, include_background: bool = False) -> None:
        self.ignore_index = ignore_index
        self.include_background = include_background
        if include_background:
            self.name = f"{type(self).name}_all"

    def stats(self, prediction, target):
        return class_overlap(prediction, target, self.ignore_index, self.name).flatten()

    def compute(self, stats):
        values = self.per_class(stats)
        if not self.include_background and values.numel() > 1:
            values = values[1:]
        present = values[~values.isnan()]
        return float(present.mean()) if present.numel() else float("nan")


class Dice(_MeanOverClasses):
    """Global mean Dice 2|P∩G| / (|P| + |G|): ``dice`` over the foreground classes, ``dice_all``
    over every class (``include_background=True``)."""

    name = "dice"


class IoU(_MeanOverClasses):
    """Global mean intersection over union |P∩G| / |P∪G|: ``iou`` over the foreground classes,
    ``iou_all`` over every class (``include_background=True``)."""

    name = "iou"
    per_class = staticmethod(iou_per_class)


class ClassDice(Metric):
    """Global Dice of one class, reported as ``dice_<label>`` (the label defaults to the index)."""

    higher_is_better = True

    def __init__(self, index: int, label: str | None = None, ignore_index: int | None = None) -> None:
        if not isinstance(index, int) or index < 0:
            raise ValueError(f"ClassDice index = {index!r} is invalid: a class index >= 0")
        self.index = index
        self.ignore_index = ignore_index
        self.name = f"dice_{label if label is not None else index}"

    def stats(self, prediction, target):
        if self.index >= prediction.shape[1]:
            raise ValueError(f"{self.name}: class {self.index} does not exist, the prediction has "
                             f"{prediction.shape[1]} classes")
        return class_overlap(prediction, target, self.ignore_index, self.name)[:, self.index]

    def compute(self, stats):
        return float(dice_per_class(stats.view(3, 1))[0])


class MacroF1(Metric):
    """Macro-averaged F1 of class-score predictions: per class, F1 = 2 TP / (2 TP + FP + FN) of the
    arg-max against the target, averaged over the classes that occur in the truth or the
    predictions (scikit-learn's ``f1_score(average="macro")``). The stats are the per-class counts
    (TP, FP, FN), summed over batches and processes, so the value is exact: never a mean of
    per-batch F1s. Beside accuracy it shows a child that predicts only the majority class (high
    accuracy on unbalanced data, macro-F1 near 1 / classes). Targets equal to ``ignore_index`` are
    not counted. stats = (TP_0..TP_K-1, FP_0.., FN_0..)."""

    name = "macro_f1"
    higher_is_better = True

    def __init__(self, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index

    def stats(self, prediction, target):
        inter, predicted, true = class_overlap(prediction, target, self.ignore_index, self.name)
        return torch.cat([inter, predicted - inter, true - inter])

    def compute(self, stats):
        tp, fp, fn = stats.view(3, -1)
        counted = 2 * tp + fp + fn
        present = counted > 0
        if not bool(present.any()):
            return float("nan")
        return float((2 * tp[present] / counted[present]).mean())


#: The built-in metrics by registered name (factories, so every run gets fresh objects).
BUILTIN_METRICS: dict[str, Callable[[], Metric]] = {
    "accuracy": Accuracy,
    "error": ErrorRate,
    "mae": MeanAbsoluteError,
    "epe": EndPointError,
    "dice": Dice,
    "dice_all": partial(Dice, include_background=True),
    "iou": IoU,
    "iou_all": partial(IoU, include_background=True),
    "macro_f1": MacroF1,
}
