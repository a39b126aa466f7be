"""Loss functions the built-in tasks are made of, for plugins' tasks to reuse.

Class scores are ``(B, K)`` vectors or ``(B, K, *S)`` maps; class targets are ``(B,)`` or
``(B, *S)`` integer indices, where ``ignore_index`` marks elements that take part in no loss and no
metric. Dense regression targets are a tensor shaped like the prediction, or ``(target, valid)``
with a ``(B, *S)`` mask (boolean or 0/1 weights) of valid pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_class_target(where: str, prediction: torch.Tensor, target: torch.Tensor,
                       ignore_index: int | None = None) -> torch.Tensor:
    """Validate class scores against class indices; return the boolean mask of counted elements.

    Scores of 2 dims are vectors (targets ``(B,)``), more dims are maps (targets ``(B, *S)``).
    Every counted target must lie in ``0..K-1``; the error names the offending values.
    """
    dense = prediction.dim() >= 3
    if dense:
        ok = tuple(target.shape) == (prediction.shape[0], *prediction.shape[2:])
        want = "scores (B, num_classes, H, W) and class-index masks (B, H, W)"
    else:
        ok = prediction.dim() == 2 and target.dim() == 1 and target.shape[0] == prediction.shape[0]
        want = "scores (B, num_classes) and class indices (B,)"
    if not ok:
        raise ValueError(f"{where}: expected {want}; got prediction shape {tuple(prediction.shape)} and "
                         f"target shape {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"{where}: targets must be integer class indices, got dtype {target.dtype}")
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    classes = prediction.shape[1]
    bad = valid & ((target < 0) | (target >= classes))
    if bool(bad.any()):
        values = sorted({int(v) for v in target[bad].unique()[:5]})
        allowed = f"0..{classes - 1}" + ("" if ignore_index is None else f" or the ignore index {ignore_index}")
        raise ValueError(f"{where}: target holds class index(es) {values} but the prediction has "
                         f"{classes} classes: allowed {allowed}")
    return valid


def one_hot(target: torch.Tensor, num_classes: int, like: torch.Tensor,
            valid: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, *S)`` class indices -> ``(B, K, *S)`` one-hot in ``like``'s dtype; zero where not ``valid``."""
    if valid is not None:
        target = torch.where(valid, target, torch.zeros_like(target))
    hot = F.one_hot(target.long(), num_classes).to(like.dtype)
    hot = hot.movedim(-1, 1) if hot.dim() > 2 else hot
    return hot if valid is None else hot * valid.unsqueeze(1).to(hot.dtype)


def masked_mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the elements where ``valid`` (same shape) holds; 0 when none does."""
    if valid is None:
        return values.mean()
    weight = valid.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1)


def class_probability_mae(prediction: torch.Tensor, target: torch.Tensor,
                          valid: torch.Tensor | None = None) -> torch.Tensor:
    """HKT's inheritance loss for class scores (DESIGN §2): the mean absolute error between the
    softmax probabilities and the one-hot targets over the counted elements and every class."""
    error = (prediction.softmax(dim=1) - one_hot(target, prediction.shape[1], prediction, valid)).abs()
    return masked_mean(error.sum(dim=1), valid) / prediction.shape[1]


def masked_cross_entropy(prediction: torch.Tensor, target: torch.Tensor,
                         valid: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy averaged over the counted elements (0 when none is counted)."""
    if valid is None:
        return F.cross_entropy(prediction, target.long())
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    return masked_mean(F.cross_entropy(prediction, safe, reduction="none"), valid)


def soft_dice_loss(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, *,
                   smooth: float = 1.0) -> torch.Tensor:
    """``1 -`` the mean over classes of the batch-wide soft Dice of the softmax probabilities,
    ``(2 sum p g + s) / (sum p + sum g + s)`` over the counted pixels."""
    probs = prediction.softmax(dim=1)
    if valid is not None:
        probs = probs * valid.unsqueeze(1).to(probs.dtype)
    truth = one_hot(target, prediction.shape[1], probs, valid)
    dims = (0, *range(2, probs.dim()))
    intersection = (probs * truth).sum(dims)
    sizes = probs.sum(dims) + truth.sum(dims)
    return 1 - ((2 * intersection + smooth) / (sizes + smooth).clamp_min(1e-12)).mean()


def hinton_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
              valid: torch.Tensor | None = None) -> torch.Tensor:
    """Hinton's distillation term ``T^2 KL(softmax(t/T) || softmax(s/T))`` over the class dim,
    averaged over samples (and counted pixels for maps). No gradient reaches the teacher."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher.detach() / temperature, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    return masked_mean(kl, valid) * temperature ** 2


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


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, *,
              where: str = "L1") -> torch.Tensor:
    """Mean ``|prediction - target|`` over every channel of the valid pixels (0 when none is valid).

    ``valid`` is a ``(B, *S)`` mask (boolean or 0/1 weights) or None for every pixel.
    """
    if tuple(prediction.shape) != tuple(target.shape):
        raise ValueError(f"{where}: expected a target shaped like the prediction {tuple(prediction.shape)}, "
                         f"got {tuple(target.shape)}")
    error = (prediction - target.to(prediction.dtype)).abs()
    return masked_mean(error, None if valid is None else broadcast_valid(valid, error))
