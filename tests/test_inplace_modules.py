"""In-place modules in either network of a Family (torchvision's ``Dropout(inplace=True)`` after
``flatten``, ``ReLU(inplace=True)``): the Family builds, trains and exports the plain child."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hkt_core.align import align
from hkt_core.errors import TraceError
from hkt_core.family import Family


class InPlaceNet(nn.Module):
    """EfficientNet-like: stages with in-place activations, pooled features flattened (a view), a
    classifier starting with an in-place dropout on that view."""

    def __init__(self, width: int, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.stage = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU6(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.3, inplace=True), nn.Linear(width, classes))

    def forward(self, x):
        x = self.stage(self.stem(x))
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)


class ReadsViewAgain(nn.Module):
    """A ReLU(inplace=True) on a view whose base is read again: not expressible out of place."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(4 * 8 * 8 + 4, 3)

    def forward(self, x):
        y = self.conv(x)
        flat = self.act(y.flatten(1))
        return self.head(torch.cat([flat, y.mean((2, 3))], 1))


def test_in_place_modules_in_parent_and_child_train_and_export():
    torch.manual_seed(0)
    parent, child = InPlaceNet(16), InPlaceNet(8)
    x = torch.randn(4, 3, 8, 8)
    family = Family(parent, child, align(parent, child, x[:2], stages=3))
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    opt = torch.optim.SGD(family.trainable_parameters(), lr=0.1)
    for _ in range(2):
        loss = family.loss(family(x), torch.tensor([0, 1, 2, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())
    family.eval()
    with torch.no_grad():
        out = family(x)
        # the child alone in float64, eager (its in-place modules as written), is the reference
        reference = InPlaceNet(8).double()
        reference.load_state_dict(child.state_dict())
        expected = reference.eval()(x.double())
        torch.testing.assert_close(out.native.double(), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.parent_head.shape, expected.shape)
        assert torch.equal(family.export_child().eval()(x), child.eval()(x))


def test_in_place_update_of_a_view_read_again_is_refused_in_one_line():
    torch.manual_seed(0)
    parent, child = ReadsViewAgain(), ReadsViewAgain()
    with pytest.raises(TraceError) as info:
        Family(parent, child, [("conv", "conv"), ("head", "head")], example_inputs=torch.randn(2, 3, 8, 8))
    message = str(info.value)
    assert "module 'act' (ReLU, inplace=True) updates a view" in message and "inplace=False" in message
    assert "\n" not in message
