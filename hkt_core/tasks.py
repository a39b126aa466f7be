"""Tasks: the task loss, the inheritance loss, the distillation loss and the metrics of a task.

A task is registered in the ``losses`` registry under its name (``HKTConfig.task`` selects it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metrics import (Accuracy, Dice, EndPointError, ErrorRate, IoU, MeanAbsoluteError, Metric,
                      broadcast_valid)


class Task:
    """Base class every registered task follows.

    - ``loss(prediction, target)``: the task loss (L2 on the native output; the baseline's loss).
    - ``inherit_loss(prediction, target)``: the MAE of DESIGN §2 used for L1 and L3.
    - ``distill_loss(student, teacher, target)``: the ``kd`` method's loss (includes the task term).
    - ``metrics()``: fresh :class:`~hkt_core.metrics.Metric` objects; the first is primary.
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


def _class_scores(task: str, prediction: torch.Tensor, target: torch.Tensor, *, dense: bool) -> None:
    """Shape check with a message naming what was expected (scores and class indices)."""
    if dense:
        ok = prediction.dim() >= 3 and tuple(target.shape) == (prediction.shape[0], *prediction.shape[2:])
        want = "scores (B, num_classes, H, W) and class-index masks (B, H, W)"
    else:
        ok = prediction.dim() == 2 and target.dim() == 1 and target.shape[0] == prediction.shape[0]
        want = "scores (B, num_classes) and class indices (B,)"
    if not ok:
        raise ValueError(f"{task}: expected {want}; got prediction {tuple(prediction.shape)} and "
                         f"target {tuple(target.shape)}")
    if target.dtype.is_floating_point:
        raise ValueError(f"{task}: targets must be integer class indices, got dtype {target.dtype}")


def _one_hot(target: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """(B, *S) class indices -> (B, K, *S) one-hot in ``like``'s dtype."""
    hot = F.one_hot(target.long(), num_classes).to(like.dtype)
    return hot.movedim(-1, 1) if hot.dim() > 2 else hot


def _hinton(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over samples (and pixels for maps)."""
    log_p = F.log_softmax(student / temperature, dim=1)
    log_q = F.log_softmax(teacher.detach() / temperature, dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=1)
    return kl.mean() * temperature ** 2


class _ClassScoresTask(Task):
    """Shared by tasks whose predictions are class scores: the inheritance loss is the MAE between
    softmax and one-hot targets, ``kd`` is Hinton's ``weight * T^2 * KL + (1 - weight) * loss``.
    ``dense`` says whether scores are maps (B, K, *S) with masks (B, *S) or vectors (B, K)."""

    dense: bool = False

    def inherit_loss(self, prediction, target):
        _class_scores(self.name, prediction, target, dense=self.dense)
        return (prediction.softmax(dim=1) - _one_hot(target, prediction.shape[1], prediction)).abs().mean()

    def distill_loss(self, student, teacher, target, *, temperature=4.0, weight=0.9):
        if student.shape != teacher.shape:
            raise ValueError(f"{self.name}: student scores {tuple(student.shape)} and teacher scores "
                             f"{tuple(teacher.shape)} must have the same shape")
        return weight * _hinton(student, teacher, temperature) + (1 - weight) * self.loss(student, target)


class ClassificationTask(_ClassScoresTask):
    """Cross-entropy; the inheritance loss is the MAE between softmax and one-hot targets; ``kd`` is
    Hinton's distillation: ``weight * T^2 * KL(teacher_T || student_T) + (1 - weight) * CE``."""

    name = "classification"
    primary_metric = "accuracy"
    higher_is_better = True

    def loss(self, prediction, target):
        _class_scores(self.name, prediction, target, dense=False)
        return F.cross_entropy(prediction, target)

    def metrics(self):
        return [Accuracy(), ErrorRate()]

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
        target, valid = (target if isinstance(target, (tuple, list)) else (target, None))
        if tuple(prediction.shape) != tuple(target.shape):
            raise ValueError(f"{self.name}: expected a target shaped like the prediction "
                             f"{tuple(prediction.shape)}, got {tuple(target.shape)}")
        err = (prediction - target.to(prediction.dtype)).abs()
        if valid is None:
            return err.mean()
        mask = broadcast_valid(valid, err)
        return (err * mask).sum() / mask.sum().clamp_min(1)

    def loss(self, prediction, target):
        return self._l1(prediction, target)

    def inherit_loss(self, prediction, target):
        return self._l1(prediction, target)

    def distill_loss(self, student, teacher, target, *, temperature=4.0, weight=0.9):
        valid = target[1] if isinstance(target, (tuple, list)) else None
        to_teacher = self._l1(student, teacher.detach() if valid is None else (teacher.detach(), valid))
        return weight * to_teacher + (1 - weight) * self._l1(student, target)

    def metrics(self):
        return [EndPointError(), MeanAbsoluteError()]

    def example(self, batch_size=4, generator=None):
        """Flow-like maps (B, 2, H, W) with a validity mask."""
        prediction = torch.randn(batch_size, 2, 6, 6, generator=generator)
        target = torch.randn(batch_size, 2, 6, 6, generator=generator)
        valid = torch.rand(batch_size, 6, 6, generator=generator) > 0.2
        return prediction, (target, valid)


class SegmentationTask(_ClassScoresTask):
    """Targets are class-index masks (B, H, W). Loss: cross-entropy (``loss="ce"``) or soft Dice
    (``loss="dice"``); inheritance: MAE between probabilities and one-hot masks; ``kd``: pixel-wise
    Hinton KL to the parent plus the task loss. Primary metric: mean Dice (higher is better)."""

    name = "segmentation"
    primary_metric = "dice"
    higher_is_better = True
    dense = True

    def __init__(self, loss: str = "ce", name: str = "segmentation") -> None:
        if loss not in ("ce", "dice"):
            raise ValueError(f"segmentation loss {loss!r} is invalid: must be one of ce, dice")
        self.loss_kind = loss
        self.name = name

    def loss(self, prediction, target):
        _class_scores(self.name, prediction, target, dense=True)
        if self.loss_kind == "ce":
            return F.cross_entropy(prediction, target.long())
        probs = prediction.softmax(dim=1)
        hot = _one_hot(target, prediction.shape[1], probs)
        dims = (0, *range(2, probs.dim()))
        inter = (probs * hot).sum(dims)
        sizes = probs.sum(dims) + hot.sum(dims)
        return 1 - ((2 * inter + 1.0) / (sizes + 1.0)).mean()

    def metrics(self):
        return [Dice(), IoU(), Accuracy()]

    def example(self, batch_size=4, generator=None):
        return (torch.randn(batch_size, 3, 6, 6, generator=generator),
                torch.randint(0, 3, (batch_size, 6, 6), generator=generator))


def builtin_tasks() -> dict[str, Task]:
    """The tasks the core registers, by name. ``regression`` covers optical flow as dense regression
    (L1, EPE); the name ``flow`` is left to the flow plugin, which adds RAFT's sequence loss."""
    return {
        "classification": ClassificationTask(),
        "regression": RegressionTask("regression"),
        "segmentation": SegmentationTask("ce"),
        "segmentation-dice": SegmentationTask("dice", name="segmentation-dice"),
    }
