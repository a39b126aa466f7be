"""``hkt_core.features``: named intermediate values with autograd, on fx and torch.export traces,
against float64 forwards written out here; and ``hkt_core.etm.transfer_between``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hkt_core
from hkt_core.errors import AlignmentError
from hkt_core.etm import transfer_between


class TwoInputs(nn.Module):
    """Two inputs, blocks in a ModuleDict with odd keys, an in-place ReLU after a named value."""

    def __init__(self) -> None:
        super().__init__()
        self.branches = nn.ModuleDict({"0": nn.Linear(5, 6), "left_1": nn.Linear(3, 6)})
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Linear(6, 2)

    def forward(self, x, y):
        a = self.branches["0"](x)
        b = self.branches["left_1"](y)
        h = torch.tanh(a) * b
        return self.out(self.act(a) + h)


class ShapeBranch(nn.Module):
    """Control flow on a shape: torch.fx cannot trace it, torch.export can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        h = self.conv(x)
        if h.shape[-1] > 4:
            h = h * 2.0
        return self.fc(h.mean(-1))


def _double(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().double().requires_grad_(True) for k, v in module.named_parameters()}


def test_features_of_an_fx_model_with_two_inputs_match_a_float64_forward_and_its_gradients():
    torch.manual_seed(0)
    model = TwoInputs()
    feats = hkt_core.features(model, ["branches.0", "branches.left_1", "mul"], output=True)
    x, y = torch.randn(4, 5), torch.randn(4, 3)
    values = feats(x, y)
    assert set(values) == {"branches.0", "branches.left_1", "mul", "output"}
    w = _double(model)
    xd, yd = x.double(), y.double()
    a = xd @ w["branches.0.weight"].T + w["branches.0.bias"]
    b = yd @ w["branches.left_1.weight"].T + w["branches.left_1.bias"]
    h = torch.tanh(a) * b
    out = (torch.relu(a) + h) @ w["out.weight"].T + w["out.bias"]
    # the value before the in-place ReLU, as it was computed
    torch.testing.assert_close(values["branches.0"].double(), a, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(values["branches.left_1"].double(), b, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(values["mul"].double(), h, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(values["output"].double(), out, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(values["output"], model(x, y))
    # gradients of a loss on the features reach the model's own parameters
    loss = values["mul"].pow(2).sum() + values["output"].sum()
    loss.backward()
    (h.pow(2).sum() + out.sum()).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad.double(), w[name].grad, atol=1e-5, rtol=1e-5)


def test_features_on_the_torch_export_fallback_follow_the_model_and_its_training():
    torch.manual_seed(1)
    model = ShapeBranch()
    x = torch.randn(3, 2, 6)
    feats = hkt_core.features(model, ["conv"], (x,), output=True)
    assert feats.backend == "export"
    values = feats(torch.randn(5, 2, 6))  # another batch size: the export keeps it dynamic
    assert values["conv"].shape == (5, 3, 6)
    w = _double(model)
    ref = F.conv1d(x.double(), w["conv.weight"], w["conv.bias"], padding=1)
    values = feats(x)
    torch.testing.assert_close(values["conv"].double(), ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(values["output"], model(x))
    values["conv"].sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(model.conv.weight.grad.double(), w["conv.weight"].grad, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the graph shares the parameters: an update shows in the next call
        model.conv.bias.add_(1.0)
    torch.testing.assert_close(feats(x)["conv"], values["conv"].detach() + 1.0)


def test_an_unknown_name_is_one_line_naming_it_and_close_matches():
    with pytest.raises(AlignmentError) as info:
        hkt_core.features(TwoInputs(), ["branches.0", "brnches.left_1"])
    text = str(info.value)
    assert "\n" not in text and "'brnches.left_1'" in text and "branches.left_1" in text.split("nearby")[1]
    with pytest.raises(AlignmentError, match="pass example_inputs"):
        hkt_core.features(ShapeBranch(), ["conv"])
    with pytest.raises(AlignmentError, match="non-empty list"):
        hkt_core.features(TwoInputs(), [])


def test_transfer_between_follows_the_kinds_and_refuses_what_cannot_map():
    from hkt_core.kinds import ValueKind

    grid = ValueKind("tokens", (2, 16, 6), grid=(4, 4))  # 16 tokens on a 4x4 grid
    t = transfer_between(grid, "map", None, (2, 4, 4, 4))
    assert type(t).__name__ == "TokensToMap" and t(torch.randn(2, 6, 16)).shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match="tokens without a 2-D grid"):
        transfer_between("tokens", "map", (2, 16, 6), (2, 4, 4, 4))
    t = transfer_between("map", "vector", (2, 8, 5), (2, 3))
    assert t(torch.randn(2, 8, 5)).shape == (2, 3)
    t = transfer_between("map", "map", (2, 8, 10), (2, 16, 20))
    assert t(torch.randn(2, 8, 10)).shape == (2, 16, 20)
    with pytest.raises(ValueError, match="no transfer maps map 10 onto map 4x4"):
        transfer_between("map", "map", (2, 8, 10), (2, 16, 4, 4))
    with pytest.raises(ValueError, match="source kind 'grid' is not one of map, tokens, vector"):
        transfer_between("grid", "map", (2, 8), (2, 16, 4, 4))
