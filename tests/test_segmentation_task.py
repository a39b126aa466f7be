"""The segmentation task's losses against values computed by hand in float64 (2x2 image, 3 classes)."""

import math

import pytest
import torch

from hkt_core.tasks import SegmentationTask

# one image 2x2, three classes; logits chosen by hand
LOGITS = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]],
                        [[0.0, 1.0], [0.0, 0.0]],
                        [[0.0, 0.0], [3.0, 0.0]]]], dtype=torch.float64)
TARGET = torch.tensor([[[0, 1], [2, 1]]])


def softmax_at(r, c):
    z = [LOGITS[0, k, r, c].item() for k in range(3)]
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


PIXELS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def ref_ce(pixels):
    return sum(-math.log(softmax_at(r, c)[int(TARGET[0, r, c])]) for r, c in pixels) / len(pixels)


def ref_soft_dice_loss(pixels, smooth):
    dices = []
    for k in range(3):
        inter = sum(softmax_at(r, c)[k] * float(TARGET[0, r, c] == k) for r, c in pixels)
        sizes = sum(softmax_at(r, c)[k] + float(TARGET[0, r, c] == k) for r, c in pixels)
        dices.append((2 * inter + smooth) / (sizes + smooth))
    return 1 - sum(dices) / 3


def test_cross_entropy_plus_soft_dice_matches_hand_computation():
    task = SegmentationTask(ce_weight=0.7, dice_weight=0.3, smooth=1.0)
    expected = 0.7 * ref_ce(PIXELS) + 0.3 * ref_soft_dice_loss(PIXELS, 1.0)
    assert task.loss(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-12)


def test_soft_dice_without_smoothing():
    task = SegmentationTask(smooth=0.0)
    assert task.soft_dice_loss(LOGITS, TARGET).item() == pytest.approx(ref_soft_dice_loss(PIXELS, 0.0), rel=1e-12)


def test_ignored_pixels_take_no_part():
    task = SegmentationTask(ignore_index=255)
    target = TARGET.clone()
    target[0, 1, 1] = 255
    kept = PIXELS[:3]
    assert task.cross_entropy(LOGITS, target).item() == pytest.approx(ref_ce(kept), rel=1e-12)
    # soft Dice over the three kept pixels only
    dices = []
    for k in range(3):
        inter = sum(softmax_at(r, c)[k] * float(target[0, r, c] == k) for r, c in kept)
        sizes = sum(softmax_at(r, c)[k] + float(target[0, r, c] == k) for r, c in kept)
        dices.append((2 * inter + 1) / (sizes + 1))
    assert task.soft_dice_loss(LOGITS, target).item() == pytest.approx(1 - sum(dices) / 3, rel=1e-12)


def test_inherit_loss_is_mae_between_probabilities_and_one_hot():
    task = SegmentationTask()
    total = sum(abs(softmax_at(r, c)[k] - float(TARGET[0, r, c] == k)) for r, c in PIXELS for k in range(3))
    assert task.inherit_loss(LOGITS, TARGET).item() == pytest.approx(total / 12, rel=1e-12)


def test_distill_loss_is_pixelwise_kl_blended_with_task_loss():
    task = SegmentationTask()
    teacher = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]],
                             [[1.0, 2.0], [0.0, 0.0]],
                             [[0.0, 0.0], [2.0, 1.0]]]], dtype=torch.float64)
    t = 2.0
    kl = 0.0
    for r, c in PIXELS:
        zs = [LOGITS[0, k, r, c].item() / t for k in range(3)]
        zt = [teacher[0, k, r, c].item() / t for k in range(3)]
        ps = [math.exp(v) / sum(math.exp(u) for u in zs) for v in zs]
        pt = [math.exp(v) / sum(math.exp(u) for u in zt) for v in zt]
        kl += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    expected = 0.8 * (kl / 4) * t * t + 0.2 * task.loss(LOGITS, TARGET).item()
    got = task.distill_loss(LOGITS, teacher, TARGET, temperature=t, weight=0.8)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_gradients_flow_to_logits():
    logits = LOGITS.clone().requires_grad_(True)
    SegmentationTask().loss(logits, TARGET).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("target, message", [
    (torch.tensor([[[0, 1], [3, 1]]]), r"class index\(es\) \[3\].*allowed 0\.\.2"),
    (torch.zeros(1, 3, 3, dtype=torch.long), "shape"),
    (torch.zeros(1, 2, 2), "integer"),
])
def test_bad_targets_are_refused_clearly(target, message):
    with pytest.raises(ValueError, match=message):
        SegmentationTask().loss(LOGITS, target)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="both 0"):
        SegmentationTask(ce_weight=0, dice_weight=0)
    with pytest.raises(ValueError, match="smooth"):
        SegmentationTask(smooth=-1)


def test_metrics_include_per_class_dice_when_classes_are_known():
    names = [m.name for m in SegmentationTask().metrics()]
    assert names[0] == "dice" and "iou" in names
    named = SegmentationTask().with_classes(2, ["background", "liver"])
    assert [m.name for m in named.metrics()][-2:] == ["dice_background", "dice_liver"]
