"""The ``seg`` task: cross-entropy plus soft Dice, Dice/IoU metrics, an ignore index.

Predictions are logits (B, C, H, W); targets are class-index masks (B, H, W). Pixels whose target
is ``ignore_index`` (255 by default, the usual "void" value of PNG masks) take no part in any loss
or metric.

- task loss: ``ce_weight * CE + dice_weight * (1 - soft Dice)``; soft Dice is computed over the
  whole batch per class with softmax probabilities, ``(2 sum p g + s) / (sum p + sum g + s)`` with
  smoothing ``s`` (1 by default), averaged over all classes. Cross-entropy keeps gradients alive
  on every pixel; Dice counters the imbalance of small structures.
- inheritance loss (L1, L3 of HKT): mean absolute error between the softmax probabilities and the
  one-hot mask over valid pixels and classes (DESIGN §2).
- distillation loss (the ``kd`` method): pixel-wise ``T^2 KL(softmax(t/T) || softmax(s/T))``
  averaged over valid pixels, blended with the task loss by ``weight``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hkt_core.tasks import Task

from .metrics import ClassDice, MeanDice, MeanIoU, PixelAccuracy, check_segmentation_pair


def _one_hot(target: torch.Tensor, valid: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, C, H, W) float one-hot of ``target``, zero at ignored pixels."""
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    one_hot = F.one_hot(safe, classes).permute(0, 3, 1, 2)
    return one_hot * valid.unsqueeze(1)


class SegmentationTask(Task):
    """Semantic segmentation with cross-entropy + soft Dice and global Dice/IoU metrics.

    ``num_classes`` and ``class_names`` are optional: with them, :meth:`metrics` also reports one
    Dice per class (``dice_<name>``); :meth:`with_classes` returns such a copy.
    """

    name = "seg"
    primary_metric = "dice"
    higher_is_better = True

    def __init__(self, *, ce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0,
                 ignore_index: int | None = 255, include_background: bool = False,
                 num_classes: int | None = None, class_names: list[str] | None = None) -> None:
        for field, value in (("ce_weight", ce_weight), ("dice_weight", dice_weight), ("smooth", smooth)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"SegmentationTask.{field} = {value!r} is invalid: a number >= 0")
        if ce_weight == 0 and dice_weight == 0:
            raise ValueError("SegmentationTask: ce_weight and dice_weight are both 0; at least one must be > 0")
        if class_names is not None and num_classes is not None and len(class_names) != num_classes:
            raise ValueError(f"SegmentationTask: {len(class_names)} class_names for num_classes = {num_classes}")
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.num_classes = num_classes if num_classes is not None else (len(class_names) if class_names else None)
        self.class_names = list(class_names) if class_names else None

    def with_classes(self, num_classes: int, class_names: list[str] | None = None) -> "SegmentationTask":
        """A copy that knows its classes (adds per-class Dice to :meth:`metrics`)."""
        return SegmentationTask(ce_weight=self.ce_weight, dice_weight=self.dice_weight, smooth=self.smooth,
                                ignore_index=self.ignore_index, include_background=self.include_background,
                                num_classes=num_classes, class_names=class_names)

    # -- losses -------------------------------------------------------------------------------------
    def soft_dice_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """1 - mean over classes of the batch-wide soft Dice of softmax probabilities."""
        valid = check_segmentation_pair(prediction, target, self.ignore_index)
        probs = prediction.softmax(dim=1) * valid.unsqueeze(1)
        truth = _one_hot(target, valid, prediction.shape[1]).to(probs.dtype)
        dims = (0, 2, 3)
        intersection = (probs * truth).sum(dims)
        sizes = probs.sum(dims) + truth.sum(dims)
        dice = (2 * intersection + self.smooth) / (sizes + self.smooth).clamp_min(1e-12)
        return 1 - dice.mean()

    def cross_entropy(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over valid pixels (0 when every pixel is ignored)."""
        valid = check_segmentation_pair(prediction, target, self.ignore_index)
        per_pixel = F.cross_entropy(prediction, torch.where(valid, target, torch.zeros_like(target)).long(),
                                    reduction="none")
        return (per_pixel * valid).sum() / valid.sum().clamp_min(1)

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = prediction.new_zeros(())
        if self.ce_weight:
            total = total + self.ce_weight * self.cross_entropy(prediction, target)
        if self.dice_weight:
            total = total + self.dice_weight * self.soft_dice_loss(prediction, target)
        return total

    def inherit_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = check_segmentation_pair(prediction, target, self.ignore_index)
        probs = prediction.softmax(dim=1)
        truth = _one_hot(target, valid, prediction.shape[1]).to(probs.dtype)
        error = (probs - truth).abs() * valid.unsqueeze(1)
        return error.sum() / (valid.sum() * prediction.shape[1]).clamp_min(1)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, *,
                     temperature: float = 4.0, weight: float = 0.9) -> torch.Tensor:
        if student.shape != teacher.shape:
            raise ValueError(f"distillation needs student and teacher logits of one shape, got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        valid = check_segmentation_pair(student, target, self.ignore_index)
        log_s = F.log_softmax(student / temperature, dim=1)
        log_t = F.log_softmax(teacher.detach() / temperature, dim=1)
        kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)
        kd = (kl * valid).sum() / valid.sum().clamp_min(1) * temperature ** 2
        return weight * kd + (1 - weight) * self.loss(student, target)

    # -- metrics ------------------------------------------------------------------------------------
    def metrics(self) -> list:
        out = [MeanDice(self.ignore_index, self.include_background),
               MeanIoU(self.ignore_index, self.include_background),
               PixelAccuracy(self.ignore_index)]
        if self.num_classes:
            names = self.class_names or [str(i) for i in range(self.num_classes)]
            out += [ClassDice(i, names[i], self.ignore_index) for i in range(self.num_classes)]
        return out

    def example(self, batch_size: int = 4, generator: torch.Generator | None = None):
        """Logits (B, 3, 6, 6) and class-index masks with a few ignored pixels."""
        logits = torch.randn(batch_size, 3, 6, 6, generator=generator)
        target = torch.randint(0, 3, (batch_size, 6, 6), generator=generator)
        ignored = torch.rand(batch_size, 6, 6, generator=generator) < 0.1
        return logits, target.masked_fill(ignored, self.ignore_index)
