"""Built-in tasks and metrics against plain float64 references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hkt_core
from hkt_core.tasks.metrics import (Accuracy, Dice, EndPointError, ErrorRate, IoU, MeanAbsoluteError,
                              MetricAccumulator)
from hkt_core.tasks import ClassificationTask, RegressionTask, SegmentationTask, Task


def _softmax(z, axis=1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 4, generator=g, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2, 0])


# -- classification ----------------------------------------------------------------------------

def test_classification_losses_match_reference(logits):
    z, y = logits
    task = ClassificationTask()
    p = _softmax(z.numpy())
    ce = -np.mean(np.log(p[np.arange(6), y.numpy()]))
    assert float(task.loss(z, y)) == pytest.approx(ce, rel=1e-12)
    onehot = np.eye(4)[y.numpy()]
    assert float(task.inherit_loss(z, y)) == pytest.approx(np.abs(p - onehot).mean(), rel=1e-12)


def test_hinton_kd_matches_reference(logits):
    z, y = logits
    teacher = torch.flip(z, dims=[1]) * 2
    T, w = 3.0, 0.7
    ps = _softmax(z.numpy() / T)
    pt = _softmax(teacher.numpy() / T)
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
    ce = -np.mean(np.log(_softmax(z.numpy())[np.arange(6), y.numpy()]))
    expected = w * T * T * kl + (1 - w) * ce
    got = ClassificationTask().distill_loss(z, teacher, y, temperature=T, weight=w)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_kd_gradient_does_not_reach_teacher(logits):
    z, y = logits
    teacher = z.clone().requires_grad_(True)
    ClassificationTask().distill_loss(z.clone().requires_grad_(True), teacher, y).backward()
    assert teacher.grad is None


def test_classification_shape_errors_say_what_is_expected(logits):
    z, y = logits
    with pytest.raises(ValueError, match=r"expected scores \(B, num_classes\) and class indices \(B,\)"):
        ClassificationTask().loss(z, y[:3])
    with pytest.raises(ValueError, match="integer class indices"):
        ClassificationTask().loss(z, y.double())


def test_accuracy_and_error(logits):
    z, y = logits
    pred = z.argmax(1)
    acc = (pred == y).double().mean().item()
    assert Accuracy().compute(Accuracy().stats(z, y)) == pytest.approx(acc)
    assert ErrorRate().compute(ErrorRate().stats(z, y)) == pytest.approx(1 - acc)
    with pytest.raises(ValueError, match=r"expected scores \(B, num_classes\) and class indices \(B,\)"):
        Accuracy().stats(z, y[:2])


# -- regression / flow -------------------------------------------------------------------------

@pytest.fixture
def flow():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64)
    true = torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64)
    valid = torch.rand(2, 5, 4, generator=g) > 0.3
    return pred, true, valid


def test_regression_l1_over_valid_pixels(flow):
    pred, true, valid = flow
    p, t, v = pred.numpy(), true.numpy(), valid.numpy()
    err = np.abs(p - t)
    masked = (err * v[:, None]).sum() / (v.sum() * 2)
    task = RegressionTask("flow")
    assert float(task.loss(pred, (true, valid))) == pytest.approx(masked, rel=1e-12)
    assert float(task.inherit_loss(pred, true)) == pytest.approx(err.mean(), rel=1e-12)
    mae = MeanAbsoluteError()
    assert mae.compute(mae.stats(pred, (true, valid))) == pytest.approx(masked, rel=1e-12)


def test_end_point_error_reference(flow):
    pred, true, valid = flow
    norms = np.sqrt(((pred.numpy() - true.numpy()) ** 2).sum(axis=1))
    epe = EndPointError()
    assert epe.compute(epe.stats(pred, true)) == pytest.approx(norms.mean(), rel=1e-12)
    v = valid.numpy()
    assert epe.compute(epe.stats(pred, (true, valid))) == pytest.approx(norms[v].mean(), rel=1e-12)
    with pytest.raises(ValueError, match="must match"):
        epe.stats(pred, true[:, :1])


def test_regression_distillation_reference(flow):
    pred, true, _ = flow
    teacher = true * 0.5
    w = 0.25
    expected = w * np.abs(pred.numpy() - teacher.numpy()).mean() + (1 - w) * np.abs(pred.numpy() - true.numpy()).mean()
    got = RegressionTask().distill_loss(pred, teacher, true, weight=w)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="shaped like the prediction"):
        RegressionTask().loss(pred, true[:, :1])


# -- segmentation ------------------------------------------------------------------------------

@pytest.fixture
def masks():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 4, 6, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 6, 5), generator=g)
    return scores, target


def _dice_iou_reference(pred, true, k, *, background=False):
    dice, iou = [], []
    for c in range(0 if background else 1, k):
        a, b = pred == c, true == c
        inter, na, nb = (a & b).sum(), a.sum(), b.sum()
        if na + nb == 0:
            continue
        dice.append(2 * inter / (na + nb))
        iou.append(inter / (na + nb - inter))
    return np.mean(dice), np.mean(iou)


def test_segmentation_losses_match_reference(masks):
    scores, target = masks
    s, t = scores.numpy(), target.numpy()
    p = _softmax(s)
    onehot = np.moveaxis(np.eye(4)[t], -1, 1)
    ce = -np.mean(np.log(np.take_along_axis(p, t[:, None], axis=1)))
    task = SegmentationTask()
    assert float(task.loss(scores, target)) == pytest.approx(ce, rel=1e-12)
    assert float(task.inherit_loss(scores, target)) == pytest.approx(np.abs(p - onehot).mean(), rel=1e-12)
    inter = (p * onehot).sum(axis=(0, 2, 3))
    sizes = p.sum(axis=(0, 2, 3)) + onehot.sum(axis=(0, 2, 3))
    soft_dice = 1 - np.mean((2 * inter + 1) / (sizes + 1))
    assert float(SegmentationTask("dice").loss(scores, target)) == pytest.approx(soft_dice, rel=1e-12)
    T, w = 2.0, 0.5
    teacher = scores.roll(1, dims=1)
    ps, pt = _softmax(s / T), _softmax(teacher.numpy() / T)
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
    got = task.distill_loss(scores, teacher, target, temperature=T, weight=w)
    assert float(got) == pytest.approx(w * T * T * kl + (1 - w) * ce, rel=1e-12)


def test_segmentation_shape_error(masks):
    scores, target = masks
    with pytest.raises(ValueError, match=r"class-index masks \(B, H, W\)"):
        SegmentationTask().loss(scores, target[:, :3])
    with pytest.raises(ValueError, match="must be one of ce, dice"):
        SegmentationTask("focal")


def test_dice_iou_are_exact_over_batches(masks):
    scores, target = masks
    pred = scores.argmax(1).numpy()
    dice_ref, iou_ref = _dice_iou_reference(pred, target.numpy(), 4)
    dice_all_ref, iou_all_ref = _dice_iou_reference(pred, target.numpy(), 4, background=True)
    acc = MetricAccumulator([Dice(), IoU(), Dice(include_background=True), IoU(include_background=True),
                             Accuracy()])
    for i in range(3):  # one sample at a time: the sums must give the whole-set value
        acc.update(scores[i:i + 1], target[i:i + 1])
    values = acc.values()
    assert values["dice"] == pytest.approx(dice_ref, rel=1e-12)
    assert values["iou"] == pytest.approx(iou_ref, rel=1e-12)
    assert values["dice_all"] == pytest.approx(dice_all_ref, rel=1e-12)
    assert values["iou_all"] == pytest.approx(iou_all_ref, rel=1e-12)
    assert values["accuracy"] == pytest.approx((pred == target.numpy()).mean())


def test_ignore_index_is_left_out(masks):
    scores, target = masks
    target = target.clone()
    target[0] = 255
    acc = Accuracy(ignore_index=255)
    keep = target != 255
    expected = (scores.argmax(1)[keep] == target[keep]).double().mean().item()
    assert acc.compute(acc.stats(scores, target)) == pytest.approx(expected)
    dice = Dice(ignore_index=255)
    assert math.isfinite(dice.compute(dice.stats(scores, target)))
    pred = scores.argmax(1)[keep].numpy()
    dice_ref, iou_ref = _dice_iou_reference(pred, target[keep].numpy(), 4)
    assert dice.compute(dice.stats(scores, target)) == pytest.approx(dice_ref, rel=1e-12)
    iou = IoU(ignore_index=255)
    assert iou.compute(iou.stats(scores, target)) == pytest.approx(iou_ref, rel=1e-12)


def test_segmentation_options_match_reference_over_counted_pixels(masks):
    """ignore_index, ce+dice and include_background: every loss against a float64 reference that
    drops the ignored pixels by hand."""
    scores, target = masks
    target = target.clone()
    target[0, :2] = 255
    target[2, 3, 4] = 255
    keep = (target != 255).numpy()
    s = scores.numpy()
    t = np.where(keep, target.numpy(), 0)
    p = _softmax(s)
    onehot = np.moveaxis(np.eye(4)[t], -1, 1) * keep[:, None]
    pk = np.moveaxis(p, 1, -1)[keep]          # (counted pixels, classes)
    ce = -np.mean(np.log(pk[np.arange(len(pk)), t[keep]]))
    pm = p * keep[:, None]
    inter = (pm * onehot).sum(axis=(0, 2, 3))
    sizes = pm.sum(axis=(0, 2, 3)) + onehot.sum(axis=(0, 2, 3))
    soft_dice = 1 - np.mean((2 * inter + 0.5) / (sizes + 0.5))
    task = SegmentationTask("ce+dice", name="seg", ignore_index=255, smooth=0.5, include_background=True)
    assert float(task.loss(scores, target)) == pytest.approx(ce + soft_dice, rel=1e-12)
    mae = np.abs(pk - np.eye(4)[t[keep]]).mean()
    assert float(task.inherit_loss(scores, target)) == pytest.approx(mae, rel=1e-12)
    T, w = 3.0, 0.25
    teacher = scores.flip(1) * 1.5
    ps = np.moveaxis(_softmax(s / T), 1, -1)[keep]
    pt = np.moveaxis(_softmax(teacher.numpy() / T), 1, -1)[keep]
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
    got = task.distill_loss(scores, teacher, target, temperature=T, weight=w)
    assert float(got) == pytest.approx(w * T * T * kl + (1 - w) * (ce + soft_dice), rel=1e-12)
    assert task.primary_metric == "dice_all" == task.metrics()[0].name
    assert [m.name for m in SegmentationTask().metrics()] == ["dice", "iou", "accuracy"]


def test_segmentation_loss_presets_and_weights():
    assert (SegmentationTask().ce_weight, SegmentationTask().dice_weight) == (1.0, 0.0)
    assert (SegmentationTask("dice").ce_weight, SegmentationTask("dice").dice_weight) == (0.0, 1.0)
    both = SegmentationTask("ce+dice", dice_weight=0.3)
    assert (both.ce_weight, both.dice_weight) == (1.0, 0.3)
    with pytest.raises(ValueError, match="both 0"):
        SegmentationTask("dice", dice_weight=0)


def test_classification_ignore_index_drops_samples(logits):
    z, y = logits
    task = ClassificationTask(ignore_index=-1)
    y = y.clone()
    y[[1, 4]] = -1
    keep = (y != -1).numpy()
    p = _softmax(z.numpy())[keep]
    yk = y.numpy()[keep]
    assert float(task.loss(z, y)) == pytest.approx(-np.mean(np.log(p[np.arange(len(yk)), yk])), rel=1e-12)
    assert float(task.inherit_loss(z, y)) == pytest.approx(np.abs(p - np.eye(4)[yk]).mean(), rel=1e-12)


# -- registration ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["classification", "regression", "segmentation", "segmentation-dice"])
def test_core_registers_tasks_with_primary_metric(name):
    task = hkt_core.lookup("losses", name)
    assert isinstance(task, Task)
    metrics = task.metrics()
    assert metrics[0].name == task.primary_metric
    assert metrics[0].higher_is_better == task.higher_is_better


def test_core_registers_metrics():
    reg = hkt_core.registry("metrics")
    for name in ("accuracy", "error", "mae", "epe", "dice", "iou", "dice_all", "iou_all"):
        assert reg.get(name).name == name
        assert reg.entry(name).plugin == "core"
