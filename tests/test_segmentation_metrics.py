"""Global Dice, IoU and pixel accuracy against pixel counts done by hand."""

import math

import pytest
import torch

from hkt_core.tasks.metrics import MetricAccumulator
from hkt_core.tasks.metrics import Accuracy, ClassDice, Dice, IoU


def logits_for(pred, classes):
    """Logits whose arg-max is ``pred`` (B, H, W)."""
    return torch.nn.functional.one_hot(pred, classes).permute(0, 3, 1, 2).float()


# predicted and true masks (one image 3x3, three classes), counted by hand below
PRED = torch.tensor([[[0, 0, 1], [1, 1, 2], [2, 2, 0]]])
TRUE = torch.tensor([[[0, 1, 1], [1, 1, 1], [2, 0, 0]]])
# class 0: pred {00,01,22}, true {00,21,22}: I=2, P=3, T=3 -> Dice 4/6, IoU 2/4
# class 1: pred {02,10,11}, true {01,02,10,11,12}: I=3, P=3, T=5 -> Dice 6/8, IoU 3/5
# class 2: pred {12,20,21}, true {20}: I=1, P=3, T=1 -> Dice 2/4, IoU 1/3


def test_dice_and_iou_match_hand_counts():
    logits = logits_for(PRED, 3)
    assert ClassDice(0).compute(ClassDice(0).stats(logits, TRUE)) == pytest.approx(4 / 6)
    assert ClassDice(1).compute(ClassDice(1).stats(logits, TRUE)) == pytest.approx(6 / 8)
    assert ClassDice(2).compute(ClassDice(2).stats(logits, TRUE)) == pytest.approx(2 / 4)
    dice = Dice()
    assert dice.compute(dice.stats(logits, TRUE)) == pytest.approx((6 / 8 + 2 / 4) / 2)
    dice_all = Dice(include_background=True)
    assert (dice.name, dice_all.name) == ("dice", "dice_all")  # one name, one meaning
    assert dice_all.compute(dice_all.stats(logits, TRUE)) == pytest.approx((4 / 6 + 6 / 8 + 2 / 4) / 3)
    iou = IoU()
    assert iou.compute(iou.stats(logits, TRUE)) == pytest.approx((3 / 5 + 1 / 3) / 2)
    acc = Accuracy()
    assert acc.compute(acc.stats(logits, TRUE)) == pytest.approx(6 / 9)


def test_dice_is_global_over_batches_not_a_mean_of_batches():
    # batch 1: class 1 perfect on 1 pixel; batch 2: class 1 predicted on 3 pixels, true on 1
    p1, t1 = torch.tensor([[[1, 0], [0, 0]]]), torch.tensor([[[1, 0], [0, 0]]])
    p2, t2 = torch.tensor([[[1, 1], [1, 0]]]), torch.tensor([[[1, 0], [0, 0]]])
    acc = MetricAccumulator([Dice(), ClassDice(1, "fg")])
    acc.update(logits_for(p1, 2), t1)
    acc.update(logits_for(p2, 2), t2)
    values = acc.values()
    # I = 1 + 1, P = 1 + 3, T = 1 + 1 -> 4 / 6 (the mean of per-batch Dice would be (1 + 0.5) / 2)
    assert values["dice"] == pytest.approx(4 / 6)
    assert values["dice_fg"] == pytest.approx(4 / 6)


def test_ignore_index_and_absent_classes():
    pred = torch.tensor([[[1, 1], [0, 0]]])
    true = torch.tensor([[[1, 255], [0, 255]]])
    metric = Dice(ignore_index=255)
    stats = metric.stats(logits_for(pred, 3), true)
    # class 1: I=1, P=1, T=1 (the ignored pixel predicted 1 is not counted); class 2 absent -> left out
    assert metric.compute(stats) == pytest.approx(1.0)
    assert math.isnan(ClassDice(2, ignore_index=255).compute(ClassDice(2, ignore_index=255).stats(
        logits_for(pred, 3), true)))


def test_metrics_refuse_out_of_range_targets():
    with pytest.raises(ValueError, match="allowed 0..1"):
        Dice().stats(logits_for(torch.zeros(1, 2, 2, dtype=torch.long), 2), torch.full((1, 2, 2), 5))
    with pytest.raises(ValueError, match="class 4 does not exist"):
        ClassDice(4).stats(logits_for(PRED, 3), TRUE)
