"""Tasks: the task loss, the inheritance loss, the distillation loss and the metrics of a task.

A task is registered in the ``tasks`` registry under its name (a pair card's ``task`` selects it).
"""

from __future__ import annotations

import torch

from .losses import (check_class_target, class_probability_mae, hinton_kl, masked_cross_entropy, masked_l1,
                     soft_dice_loss)
from .metrics import (Accuracy, ClassDice, Dice, EndPointError, ErrorRate, IoU, MacroF1, MeanAbsoluteError, Metric,
                      dense_target)


class Task:
    """Base class every registered task follows.

    - ``loss(prediction, target)``: the task loss (L2 on the native output; the baseline's loss).
    - ``inherit_loss(prediction, target)``: the MAE of DESIGN §2 used for L1 and L3.
    - ``distill_loss(student, teacher, target)``: the ``kd`` method's loss (includes the task term).
    - ``metrics()``: fresh :class:`~hkt_core.tasks.metrics.Metric` objects; the first is primary.
    - ``primary_metric`` / ``higher_is_better``: used to pick the best checkpoint on validation.
    """

    name: str = "task"
    primary_metric: str = "loss"
    higher_is_better: bool = False

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inherit_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, *,
                     temperature: float = 4.0, weight: float = 0.9) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> list[Metric]:
        raise NotImplementedError

    def example(self, batch_size: int = 4, generator: torch.Generator | None = None):
        """A random ``(prediction, target)`` batch of this task's layout (for contract tests)."""
        raise NotImplementedError(f"task {self.name!r} does not provide example(batch_size, generator)")


# -- built-in tasks ----------------------------------------------------------------------------


class _ClassScoresTask(Task):
    """Shared by tasks whose predictions are class scores (B, K) or maps (B, K, *S) against class
    indices: the inheritance loss is the MAE between softmax and one-hot targets, ``kd`` is
    Hinton's ``weight * T^2 * KL + (1 - weight) * loss``. Targets equal to ``ignore_index`` take
    part in no loss and no metric."""

    ignore_index: int | None = None

    def _counted(self, prediction, target) -> torch.Tensor | None:
        """The mask of counted elements, or None when every element counts."""
        valid = check_class_target(self.name, prediction, target, self.ignore_index)
        return None if self.ignore_index is None else valid

    def inherit_loss(self, prediction, target):
        return class_probability_mae(prediction, target, self._counted(prediction, target))

    def distill_loss(self, student, teacher, target, *, temperature=4.0, weight=0.9):
        if student.shape != teacher.shape:
            raise ValueError(f"{self.name}: student scores {tuple(student.shape)} and teacher scores "
                             f"{tuple(teacher.shape)} must have the same shape")
        kd = hinton_kl(student, teacher, temperature, self._counted(student, target))
        return weight * kd + (1 - weight) * self.loss(student, target)


class ClassificationTask(_ClassScoresTask):
    """Cross-entropy; the inheritance loss is the MAE between softmax and one-hot targets; ``kd`` is
    Hinton's distillation: ``weight * T^2 * KL(teacher_T || student_T) + (1 - weight) * CE``."""

    name = "classification"
    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index

    def loss(self, prediction, target):
        if prediction.dim() != 2:
            raise ValueError(f"{self.name}: expected scores (B, num_classes) and class indices (B,); got "
                             f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)}")
        return masked_cross_entropy(prediction, target, self._counted(prediction, target))

    def metrics(self):
        return [Accuracy(self.ignore_index), ErrorRate(self.ignore_index), MacroF1(self.ignore_index)]

    def example(self, batch_size=4, generator=None):
        return (torch.randn(batch_size, 5, generator=generator),
                torch.randint(0, 5, (batch_size,), generator=generator))


class RegressionTask(Task):
    """Dense or vector regression (optical flow is the main case). Targets are a tensor shaped like
    the prediction, or ``(target, valid)`` with a (B, *S) mask of valid pixels. Loss: L1 over valid
    elements; inheritance: the same MAE; ``kd``: ``weight * L1(student, teacher) + (1 - weight) * L1
    to the truth``. Primary metric: end-point error (lower is better)."""

    name = "regression"
    primary_metric = "epe"
    higher_is_better = False

    def __init__(self, name: str = "regression") -> None:
        self.name = name

    def _l1(self, prediction, target):
        target, valid = dense_target(target)
        return masked_l1(prediction, target, valid, where=self.name)

    def loss(self, prediction, target):
        return self._l1(prediction, target)

    def inherit_loss(self, prediction, target):
        return self._l1(prediction, target)

    def distill_loss(self, student, teacher, target, *, temperature=4.0, weight=0.9):
        _, valid = dense_target(target)
        to_teacher = masked_l1(student, teacher.detach(), valid, where=self.name)
        return weight * to_teacher + (1 - weight) * self._l1(student, target)

    def metrics(self):
        return [EndPointError(), MeanAbsoluteError()]

    def example(self, batch_size=4, generator=None):
        """Flow-like maps (B, 2, H, W) with a validity mask."""
        prediction = torch.randn(batch_size, 2, 6, 6, generator=generator)
        target = torch.randn(batch_size, 2, 6, 6, generator=generator)
        valid = torch.rand(batch_size, 6, 6, generator=generator) > 0.2
        return prediction, (target, valid)


_SEGMENTATION_LOSSES = {"ce": (1.0, 0.0), "dice": (0.0, 1.0), "ce+dice": (1.0, 1.0)}


class SegmentationTask(_ClassScoresTask):
    """Semantic segmentation: scores (B, K, H, W) against class-index masks (B, H, W).

    Loss: ``ce_weight * CE + dice_weight * (1 - soft Dice)``; ``loss`` (``ce``, the default,
    ``dice`` or ``ce+dice``) presets the weights, either given weight replaces its preset. Cross-entropy is averaged over counted pixels, soft Dice
    is computed per class over the whole batch with smoothing ``smooth`` and averaged over all
    classes. Pixels whose target is ``ignore_index`` count in no loss and no metric. Inheritance:
    MAE between probabilities and one-hot masks; ``kd``: pixel-wise Hinton KL plus the task loss.
    Metrics: global mean Dice (primary; ``dice`` over the foreground classes, or ``dice_all`` with
    ``include_background``), IoU the same way, pixel accuracy, and one ``dice_<name>`` per class
    when ``num_classes`` (or ``class_names``) is given.
    """

    higher_is_better = True

    def __init__(self, loss: str | None = None, name: str = "segmentation", *,
                 ce_weight: float | None = None, dice_weight: float | None = None, smooth: float = 1.0,
                 ignore_index: int | None = None, include_background: bool = False,
                 num_classes: int | None = None, class_names: list[str] | None = None) -> None:
        if loss is not None and loss not in _SEGMENTATION_LOSSES:
            raise ValueError(f"segmentation loss {loss!r} is invalid: must be one of {', '.join(_SEGMENTATION_LOSSES)}")
        default_ce, default_dice = _SEGMENTATION_LOSSES[loss or "ce"]
        ce_weight = default_ce if ce_weight is None else ce_weight
        dice_weight = default_dice if dice_weight is None else dice_weight
        for field, value in (("ce_weight", ce_weight), ("dice_weight", dice_weight), ("smooth", smooth)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"SegmentationTask.{field} = {value!r} is invalid: a number >= 0")
        if ce_weight == 0 and dice_weight == 0:
            raise ValueError("SegmentationTask: ce_weight and dice_weight are both 0; at least one must be > 0")
        if class_names is not None and num_classes is not None and len(class_names) != num_classes:
            raise ValueError(f"SegmentationTask: {len(class_names)} class_names for num_classes = {num_classes}")
        self.name = name
        self.ce_weight, self.dice_weight, self.smooth = float(ce_weight), float(dice_weight), float(smooth)
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.num_classes = num_classes if num_classes is not None else (len(class_names) if class_names else None)
        self.class_names = list(class_names) if class_names else None
        self.primary_metric = "dice_all" if include_background else "dice"

    def with_classes(self, num_classes: int, class_names: list[str] | None = None) -> "SegmentationTask":
        """A copy that knows its classes (adds per-class Dice to :meth:`metrics`)."""
        return SegmentationTask(name=self.name, ce_weight=self.ce_weight, dice_weight=self.dice_weight,
                                smooth=self.smooth, ignore_index=self.ignore_index,
                                include_background=self.include_background,
                                num_classes=num_classes, class_names=class_names)

    def soft_dice_loss(self, prediction, target):
        """1 - mean over classes of the batch-wide soft Dice of softmax probabilities."""
        return soft_dice_loss(prediction, target, self._counted(prediction, target), smooth=self.smooth)

    def cross_entropy(self, prediction, target):
        """Mean cross-entropy over counted pixels (0 when every pixel is ignored)."""
        return masked_cross_entropy(prediction, target, self._counted(prediction, target))

    def loss(self, prediction, target):
        if prediction.dim() < 3:
            raise ValueError(f"{self.name}: expected scores (B, num_classes, H, W) and class-index masks "
                             f"(B, H, W); got prediction {tuple(prediction.shape)} and target {tuple(target.shape)}")
        valid = self._counted(prediction, target)
        total = prediction.new_zeros(())
        if self.ce_weight:
            total = total + self.ce_weight * masked_cross_entropy(prediction, target, valid)
        if self.dice_weight:
            total = total + self.dice_weight * soft_dice_loss(prediction, target, valid, smooth=self.smooth)
        return total

    def metrics(self) -> list[Metric]:
        out = [Dice(ignore_index=self.ignore_index, include_background=self.include_background),
               IoU(ignore_index=self.ignore_index, include_background=self.include_background),
               Accuracy(self.ignore_index)]
        if self.num_classes:
            names = self.class_names or [str(i) for i in range(self.num_classes)]
            out += [ClassDice(i, names[i], self.ignore_index) for i in range(self.num_classes)]
        return out

    def example(self, batch_size=4, generator=None):
        """Scores (B, 3, 6, 6) and class-index masks (with a few ignored pixels if there is an ignore index)."""
        scores = torch.randn(batch_size, 3, 6, 6, generator=generator)
        target = torch.randint(0, 3, (batch_size, 6, 6), generator=generator)
        if self.ignore_index is None:
            return scores, target
        ignored = torch.rand(batch_size, 6, 6, generator=generator) < 0.1
        return scores, target.masked_fill(ignored, self.ignore_index)


def builtin_tasks() -> dict[str, Task]:
    """The tasks the core registers, by name. ``regression`` covers optical flow as dense regression
    (L1, EPE); the name ``flow`` is left to the flow plugin, which adds RAFT's sequence loss."""
    return {
        "classification": ClassificationTask(),
        "regression": RegressionTask("regression"),
        "segmentation": SegmentationTask("ce"),
        "segmentation-dice": SegmentationTask("dice", name="segmentation-dice"),
    }
