"""The flow task and metrics against hand-computed values and float64 references."""

import math

import pytest
import torch

from hkt_core.tasks.losses import masked_l1
from hkt_core.tasks.metrics import MetricAccumulator
from hkt_flow.adapter import RAFTAdapter
from hkt_flow.metrics import EndPointError, F1All, PixelAccuracy, flow_metrics
from hkt_flow.task import FlowTask, sequence_loss
from hkt_flow.target import make_target, split_target


def _target():
    flow = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    flow[0, 0] = torch.tensor([[10.0, 0.0], [0.0, 100.0]])
    valid = torch.tensor([[[True, True], [True, False]]])
    return flow, valid


def test_metrics_by_hand():
    flow, valid = _target()
    pred = flow.clone()
    pred[0, :, 0, 0] = torch.tensor([10.0, 4.0])   # EPE 4 (> 3 px and > 5% of 10): outlier
    pred[0, :, 0, 1] = torch.tensor([0.6, 0.8])    # EPE 1.0: not < 1 px
    pred[0, :, 1, 0] = torch.tensor([0.0, 0.5])    # EPE 0.5
    pred[0, :, 1, 1] = torch.tensor([0.0, 0.0])    # EPE 100 but invalid: ignored
    values = {}
    for metric in flow_metrics():
        values[metric.name] = metric.compute(metric.stats(pred, (flow, valid)))
    assert values["epe"] == pytest.approx((4 + 1 + 0.5) / 3)
    assert values["1px"] == pytest.approx(100 / 3)
    assert values["3px"] == pytest.approx(200 / 3)
    assert values["5px"] == pytest.approx(100.0)
    assert values["f1_all"] == pytest.approx(100 / 3)


def test_f1_all_needs_both_conditions():
    flow = torch.zeros(1, 2, 1, 2)
    flow[0, 0] = torch.tensor([[100.0, 10.0]])
    pred = flow.clone()
    pred[0, 0, 0, 0] += 4.0  # 4 px > 3 but 4% of 100 < 5%: inlier
    pred[0, 0, 0, 1] += 4.0  # 4 px > 3 and 40% of 10: outlier
    f1 = F1All()
    assert f1.compute(f1.stats(pred, flow)) == pytest.approx(50.0)


def test_metrics_pool_pixels_across_batches():
    torch.manual_seed(0)
    flows = [torch.randn(2, 2, 4, 4) for _ in range(3)]
    preds = [f + torch.randn_like(f) for f in flows]
    valids = [torch.rand(2, 4, 4) > 0.3 for _ in range(3)]
    acc = MetricAccumulator([EndPointError(), PixelAccuracy(1)])
    for p, f, v in zip(preds, flows, valids):
        acc.update(p, (f, v))
    epe = torch.cat([torch.linalg.vector_norm(p - f, dim=1)[v] for p, f, v in zip(preds, flows, valids)])
    values = acc.values()
    assert values["epe"] == pytest.approx(float(epe.double().mean()))
    assert values["1px"] == pytest.approx(float((epe < 1).double().mean() * 100))


def test_sequence_loss_matches_a_plain_reference():
    torch.manual_seed(0)
    flow = torch.randn(2, 2, 5, 6, dtype=torch.float64) * 3
    flow[0, :, 0, 0] = 500.0  # longer than max_flow: left out, as RAFT does
    valid = torch.rand(2, 5, 6) > 0.2
    preds = [flow + torch.randn_like(flow) for _ in range(3)]
    loss = sequence_loss(preds, (flow, valid), gamma=0.8)
    keep = valid.clone()
    keep[0, 0, 0] = False
    ref = 0.0
    for i, p in enumerate(preds):
        err = (p - flow).abs().permute(0, 2, 3, 1)[keep]  # (pixels, 2)
        ref += 0.8 ** (2 - i) * float(err.mean())
    assert float(loss) == pytest.approx(ref)


def test_task_reads_iterates_from_the_adapter_prediction():
    torch.manual_seed(0)
    flow = torch.randn(1, 2, 4, 4)
    preds = [torch.randn(1, 2, 4, 4) for _ in range(4)]
    task = FlowTask()
    carried = RAFTAdapter().prediction(list(preds))
    assert float(task.loss(carried, flow)) == pytest.approx(float(sequence_loss(preds, flow)))
    # the HKT inheritance MAE uses the final flow only
    assert float(task.inherit_loss(carried, flow)) == pytest.approx(float((preds[-1] - flow).abs().mean()))
    # a bare tensor is a sequence of one: plain L1
    assert float(task.loss(preds[0].clone(), flow)) == pytest.approx(float((preds[0] - flow).abs().mean()))


def test_inherit_loss_honours_validity():
    flow, valid = _target()
    pred = flow + 1.0
    pred[0, :, 1, 1] = 1e6  # invalid pixel: must not count
    assert float(FlowTask().inherit_loss(pred, (flow, valid))) == pytest.approx(1.0)
    assert float(masked_l1(pred, flow, torch.zeros(1, 2, 2))) == 0.0  # nothing valid: 0, not NaN


def test_distill_loss_mixes_imitation_and_truth():
    torch.manual_seed(0)
    flow = torch.randn(1, 2, 4, 4)
    student = [torch.randn(1, 2, 4, 4, requires_grad=True) for _ in range(2)]
    teacher = torch.randn(1, 2, 4, 4)
    task = FlowTask()
    loss = task.distill_loss(student, teacher, flow, weight=0.7)
    imitation = 0.8 * (student[0] - teacher).abs().mean() + (student[1] - teacher).abs().mean()
    truth = 0.8 * (student[0] - flow).abs().mean() + (student[1] - flow).abs().mean()
    assert float(loss.detach()) == pytest.approx(float((0.7 * imitation + 0.3 * truth).detach()), rel=1e-6)
    loss.backward()
    assert student[0].grad is not None


def test_targets_are_checked():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        split_target((torch.zeros(1, 3, 4, 4), torch.ones(1, 4, 4)))
    with pytest.raises(ValueError, match="does not match"):
        split_target((torch.zeros(1, 2, 4, 4), torch.ones(1, 4, 5)))
    with pytest.raises(ValueError, match="does not match"):
        EndPointError().stats(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match="gamma"):
        FlowTask(gamma=0)
    flow, valid = make_target(torch.zeros(2, 3, 3))
    assert valid.dtype == torch.bool and valid.shape == (3, 3) and bool(valid.all())


def test_task_metadata():
    task = FlowTask()
    assert task.name == "flow" and task.primary_metric == "epe" and not task.higher_is_better
    assert [m.name for m in task.metrics()] == ["epe", "1px", "3px", "5px", "f1_all"]
    assert not math.isnan(EndPointError().compute(torch.tensor([1.0, 2.0])))
    assert math.isnan(EndPointError().compute(torch.tensor([0.0, 0.0])))
