"""Whole-model compression: rank rules, skip rules, the report, training and safetensors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from hkt_core.errors import CheckpointError, ConfigError
from hkt_inhernet import (CompressionPolicy, InheritedLayer, compress_model, inherited_parameter_count,
                          restore)
from hkt_inhernet.layer import max_profitable_rank
from inhernet_models import small_cnn


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _energy_rank_reference(weight, energy):
    s = np.linalg.svd(weight.detach().numpy().astype(np.float64).reshape(weight.shape[0], -1),
                      compute_uv=False)
    fractions = np.cumsum(s ** 2) / np.sum(s ** 2)
    return int(np.argmax(fractions >= energy)) + 1, fractions


def test_explicit_rank_and_default_skips():
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new, report = compress_model(model, CompressionPolicy(rank=4, heads=2))
    rows = {row.name: row for row in report.layers}
    assert list(rows) == ["conv1", "conv2", "conv3", "fc1", "fc"]
    assert rows["conv1"].note == "skipped: first convolution" and not rows["conv1"].compressed
    assert rows["fc"].note == "skipped: classifier" and not rows["fc"].compressed
    assert report.ranks() == {"conv2": 4, "conv3": 4, "fc1": 4}
    assert isinstance(new.conv2, InheritedLayer) and isinstance(new.fc, nn.Linear)
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.conv2, nn.Conv2d)
    # parameter counts: per row by the formula, totals by counting
    assert rows["conv2"].params_after == inherited_parameter_count(16 * 9, 32, 4, 2, True)
    assert rows["conv2"].params_before == 32 * 16 * 9 + 32
    assert report.params_before == _count(model) and report.params_after == _count(new)
    assert report.params_after == report.params_before - sum(r.params_before - r.params_after
                                                             for r in report.layers)
    # kept energy per row matches a numpy reference
    _, fractions = _energy_rank_reference(model.conv3.weight, 1.0)
    assert rows["conv3"].kept_energy == pytest.approx(fractions[3], rel=1e-9)


def test_compressed_model_reproduces_the_rank_r_model():
    model = small_cnn().double().eval()
    new, report = compress_model(model, CompressionPolicy(rank=3))
    reference = small_cnn().double().eval()
    with torch.no_grad():
        for name in report.ranks():
            layer = reference.get_submodule(name)
            w = layer.weight.reshape(layer.weight.shape[0], -1)
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            layer.weight.copy_(((u[:, :3] * s[:3]) @ vh[:3]).reshape(layer.weight.shape))
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(new(x), reference(x), rtol=1e-9, atol=1e-10)


def test_energy_rule_picks_the_smallest_rank_holding_the_energy():
    model = small_cnn(width=32)
    new, report = compress_model(model, CompressionPolicy(energy=0.5, skip_unprofitable=False))
    for row in report.layers:
        if row.name in ("conv1", "fc"):
            continue
        expected, fractions = _energy_rank_reference(model.get_submodule(row.name).weight, 0.5)
        assert row.rank == expected
        assert row.kept_energy >= 0.5 > fractions[expected - 2]


def test_unprofitable_layers_are_left_dense():
    # random weights have flat spectra: keeping 99% of the energy needs nearly full rank
    model = small_cnn()
    new, report = compress_model(model, CompressionPolicy(energy=0.99))
    assert report.ranks() == {}
    assert all("would not save parameters" in row.note for row in report.layers
               if row.name not in ("conv1", "fc"))
    assert report.params_after == report.params_before
    # and a layer too small for any rank to save parameters
    tiny = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 4), nn.Linear(4, 2))  # 4x4: 16 weights, rank 1 needs 16
    _, report = compress_model(tiny, CompressionPolicy(rank=1, heads=2))
    assert report.layers[1].note == "skipped: no rank saves parameters"


@pytest.mark.parametrize("budget", [0.3, 0.5, 0.8])
def test_budget_is_met_and_nearly_used(budget):
    model = small_cnn(width=32)
    new, report = compress_model(model, CompressionPolicy(budget=budget, heads=2))
    target = budget * report.params_before
    assert _count(new) == report.params_after <= target
    # nothing more fits: each compressed layer is at its limit or its next rank would overshoot
    slack = target - report.params_after
    grown = 0
    for row in report.layers:
        if not row.compressed:
            continue
        d_out = row.weight_shape[0]
        d_in = math.prod(row.weight_shape[1:])
        assert 1 <= row.rank <= max_profitable_rank(d_in, d_out, 2)
        if row.rank < max_profitable_rank(d_in, d_out, 2):
            assert d_in + 2 * d_out + 2 > slack
        grown += row.rank > 1
    assert grown >= 1


def test_budget_prefers_the_directions_with_more_energy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 40), nn.Linear(40, 40), nn.Linear(40, 40), nn.Linear(40, 4))
    with torch.no_grad():  # layer 1 has a fast-decaying spectrum, layer 2 a flat one
        u, _ = torch.linalg.qr(torch.randn(40, 40))
        v, _ = torch.linalg.qr(torch.randn(40, 40))
        model[1].weight.copy_(u @ torch.diag(0.5 ** torch.arange(40.0)) @ v.T)
        model[2].weight.copy_(u @ v.T)
    _, report = compress_model(model, CompressionPolicy(budget=0.5, heads=1))
    ranks = report.ranks()
    assert ranks["1"] < ranks["2"]
    rows = {row.name: row for row in report.layers}
    # the decaying layer's next direction holds less relative energy than the flat layer's
    assert rows["1"].kept_energy > 0.98 and 0.25 ** ranks["1"] * 0.75 < 1 / 40


def test_unreachable_budget_names_the_smallest_total():
    with pytest.raises(ConfigError, match=r"rank 1 still leaves [\d,]+"):
        compress_model(small_cnn(), CompressionPolicy(budget=0.01))


def test_plans_and_exclusions():
    model = small_cnn()
    _, report = compress_model(model, CompressionPolicy(rank=2, exclude=("conv*",)))
    assert report.ranks() == {"fc1": 2}
    new, report = compress_model(model, CompressionPolicy(ranks={"conv1": 2, "fc": 3}, heads=3))
    assert report.ranks() == {"conv1": 2, "fc": 3}
    assert new.fc.num_heads == 3
    with pytest.raises(ConfigError, match="does not have as nn.Linear/nn.Conv2d: bn1"):
        compress_model(model, CompressionPolicy(ranks={"bn1": 2}))
    with pytest.raises(ConfigError, match="rank 99 exceeds its full rank 10"):
        compress_model(model, CompressionPolicy(ranks={"fc": 99}))


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of rank, energy, budget or ranks; got none"),
    ({"rank": 2, "energy": 0.9}, "got rank, energy"),
    ({"rank": 0}, "rank must be an integer >= 1"),
    ({"energy": 1.5}, r"energy must be a fraction in \(0, 1\]"),
    ({"budget": 1.0}, r"budget must be a fraction in \(0, 1\)"),
    ({"rank": 2, "heads": 0}, "heads must be an integer >= 1"),
    ({"ranks": {"fc": 0}}, r"ranks\['fc'\] must be an integer >= 1"),
])
def test_policy_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CompressionPolicy(**kwargs)


def test_policy_from_options():
    assert CompressionPolicy.from_options({}, budget=0.3).budget == 0.3
    policy = CompressionPolicy.from_options({"energy": 0.8, "heads": 3}, budget=0.3)
    assert policy.rule == "energy" and policy.budget is None and policy.heads == 3
    with pytest.raises(ConfigError, match="unknown compression option.*rnak"):
        CompressionPolicy.from_options({"rnak": 3})


def test_compressed_model_trains_and_round_trips_through_safetensors(tmp_path):
    torch.manual_seed(0)
    model = small_cnn(num_classes=4)
    new, report = compress_model(model, CompressionPolicy(budget=0.5))
    x = torch.randn(32, 3, 8, 8)
    y = torch.randint(0, 4, (32,))
    optimizer = torch.optim.Adam(new.parameters(), lr=1e-2)
    losses = []
    new.train()
    for _ in range(15):
        optimizer.zero_grad()
        loss = F.cross_entropy(new(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]

    path = tmp_path / "child.safetensors"
    save_file(new.state_dict(), str(path))
    state = load_file(str(path))
    new.eval()
    # rebuilt from the state dict alone ...
    restored = restore(small_cnn(num_classes=4), state).eval()
    torch.testing.assert_close(restored(x), new(x))
    # ... or from the report's plan
    rebuilt, _ = compress_model(small_cnn(num_classes=4), report.as_policy())
    rebuilt.load_state_dict(state)
    torch.testing.assert_close(rebuilt.eval()(x), new(x))


def test_restore_refuses_a_state_dict_that_does_not_fit():
    new, _ = compress_model(small_cnn(), CompressionPolicy(rank=2))
    state = new.state_dict()
    with pytest.raises(CheckpointError, match="does not fit the compressed model"):
        restore(small_cnn(width=8), state)
    state = dict(state)
    state["bn1.heads"] = torch.zeros(2, 3, 4)
    state["bn1.down.weight"] = torch.zeros(4, 3)
    with pytest.raises(CheckpointError, match="compresses layer 'bn1'"):
        restore(small_cnn(), state)


def test_compressed_model_traces_with_fx():
    new, _ = compress_model(small_cnn(), CompressionPolicy(rank=3))
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(torch.fx.symbolic_trace(new)(x), new(x))


@pytest.mark.slow  # importing torch.export's machinery alone takes seconds
def test_compressed_model_exports_with_torch_export():
    new, _ = compress_model(small_cnn(), CompressionPolicy(rank=3))
    new.eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(torch.export.export(new, (x,)).module()(x), new(x))


def test_frozen_layers_stay_frozen():
    model = small_cnn().requires_grad_(False)
    new, report = compress_model(model, CompressionPolicy(rank=2))
    assert not any(p.requires_grad for p in new.parameters())


def test_report_text_and_dict():
    _, report = compress_model(small_cnn(), CompressionPolicy(rank=4))
    text = report.format()
    assert "conv2" in text and "4/32" in text and "skipped: classifier" in text
    assert f"{report.params_before:,} -> {report.params_after:,}" in text
    data = report.to_dict()
    assert data["ratio"] == pytest.approx(report.params_after / report.params_before)
    assert [row["name"] for row in data["layers"]] == ["conv1", "conv2", "conv3", "fc1", "fc"]
    assert math.isclose(sum(r["params_after"] for r in data["layers"]) - sum(r["params_before"] for r in data["layers"]),
                        report.params_after - report.params_before)
