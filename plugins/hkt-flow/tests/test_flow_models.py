"""RAFT models: sizes, shapes, the correlation against a plain reference, tracing and block names."""

import math

import pytest
import torch
import torch.nn.functional as F

from hkt_core.models import count_parameters
from hkt_core.trace.tracer import fx_trace, node_names
from hkt_flow.adapter import RAFTAdapter, final_flow_name
from hkt_flow.models import raft, raft_demo_child, raft_demo_parent, raft_small
from hkt_flow.network import CorrLookup, CorrPyramid, RAFT


def test_paper_sizes_within_five_percent():
    assert abs(count_parameters(raft()) / 5.3e6 - 1) < 0.05
    assert abs(count_parameters(raft_small()) / 1.0e6 - 1) < 0.05


def test_demo_pair_is_much_smaller_and_child_smaller_than_parent():
    parent, child = count_parameters(raft_demo_parent()), count_parameters(raft_demo_child())
    assert child < parent < 0.5e6


@pytest.mark.parametrize("factory", [raft_demo_parent, raft_demo_child])
def test_forward_returns_one_flow_per_iteration(factory):
    torch.manual_seed(0)
    model = factory(iters=2).eval()
    x1, x2 = torch.rand(2, 3, 64, 64) * 255, torch.rand(2, 3, 64, 64) * 255
    out = model(x1, x2)
    assert len(out) == 2 and all(o.shape == (2, 2, 64, 64) for o in out)
    assert len(model(x1, x2, iters=3)) == 3  # the argument overrides the default


def test_bad_frames_are_refused_with_the_rule():
    model = raft_demo_child(iters=1)
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.zeros(1, 3, 60, 64), torch.zeros(1, 3, 60, 64))
    with pytest.raises(ValueError, match="same shape"):
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 72))
    with pytest.raises(ValueError, match="at least 64 pixels"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="variant"):
        RAFT("medium")


def test_correlation_pyramid_and_lookup_match_a_plain_reference():
    torch.manual_seed(1)
    b, c, h, w = 2, 5, 8, 8
    f1, f2 = torch.randn(b, c, h, w, dtype=torch.float64), torch.randn(b, c, h, w, dtype=torch.float64)
    pyramid = CorrPyramid(2)(torch.cat([f1, f2]))
    # level 0: dot products / sqrt(C)
    i, j, y, x = 3, 5, 2, 6
    ref = (f1[1, :, i, j] * f2[1, :, y, x]).sum() / math.sqrt(c)
    assert torch.allclose(pyramid[0][1 * h * w + i * w + j, 0, y, x], ref)
    # level 1: 2x2 average
    block = torch.stack([(f1[0, :, i, j] * f2[0, :, yy, xx]).sum() for yy in (2, 3) for xx in (4, 5)])
    assert torch.allclose(pyramid[1][i * w + j, 0, 1, 2], block.mean() / math.sqrt(c))
    # look-up at integer positions reads the volume; outside the map reads 0; bilinear in between
    radius = 1
    coords = torch.zeros(b, 2, h, w, dtype=torch.float64)
    coords[:, 0], coords[:, 1] = 4.0, 3.0  # every pixel looks at x=4, y=3 in frame 2
    coords[0, 0, 0, 0], coords[0, 1, 0, 0] = 0.5, 0.0  # pixel (0, 0) looks half-way between x=0 and x=1
    out = CorrLookup(2, radius)(pyramid, coords)
    assert out.shape == (b, 2 * 9, h, w)
    window = out[1, :9, i, j].view(3, 3)  # level 0, dy outer, dx inner
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            expected = (f1[1, :, i, j] * f2[1, :, 3 + dy, 4 + dx]).sum() / math.sqrt(c)
            assert torch.allclose(window[dy + 1, dx + 1], expected)
    vol = pyramid[0][0, 0]
    centre = out[0, 4, 0, 0]
    assert torch.allclose(centre, 0.5 * vol[0, 0] + 0.5 * vol[0, 1])
    assert torch.allclose(out[0, 0, 0, 0], torch.zeros((), dtype=torch.float64))  # (x-1, y-1) = (-0.5, -1): outside


def test_convex_upsampler_with_uniform_weights_of_constant_flow_is_eight_times_it():
    model = raft_demo_parent(iters=1)
    up = model.upsampler
    for p in up.parameters():
        torch.nn.init.zeros_(p)
    flow = torch.ones(1, 2, 4, 4)
    flow[:, 1] = -2.0
    out = up(flow, torch.zeros(1, model.hidden_dim, 4, 4))
    inner = out[..., 8:24, 8:24]  # away from the zero-padded border
    assert torch.allclose(inner[:, 0], torch.full_like(inner[:, 0], 8.0))
    assert torch.allclose(inner[:, 1], torch.full_like(inner[:, 1], -16.0))


def test_bilinear_upsampler_matches_interpolate():
    flow = torch.randn(1, 2, 4, 5)
    out = raft_demo_child().upsampler(flow, None)
    assert torch.allclose(out, 8 * F.interpolate(flow, size=(32, 40), mode="bilinear", align_corners=True))


@pytest.mark.parametrize("factory,iters", [(raft_demo_parent, 3), (raft_demo_child, 1)])
def test_traced_graph_has_the_three_blocks_and_matches_the_model(factory, iters):
    model = factory(iters=iters).eval()
    adapter = RAFTAdapter()
    assert adapter.handles(model)
    gm = fx_trace(model, adapter)
    names = set(node_names(gm.graph).values())
    blocks = adapter.declared_blocks(model)
    assert blocks == ["fnet", "cnet", final_flow_name(iters)]
    assert set(blocks) <= names
    inputs = adapter.example_inputs(model, [(1, 3, 64, 64)])
    assert len(inputs) == 2 and float(inputs[0].min()) >= 0 and float(inputs[0].max()) <= 255
    with torch.no_grad():
        assert torch.allclose(gm(*inputs)[-1], model(*inputs)[-1], atol=1e-5)


def test_prediction_is_the_final_flow_carrying_the_earlier_iterates():
    flows = [torch.zeros(1, 2, 8, 8), torch.ones(1, 2, 8, 8), 2 * torch.ones(1, 2, 8, 8)]
    pred = RAFTAdapter().prediction(flows)
    assert pred is flows[-1]
    assert len(pred.flow_iterates) == 2 and pred.flow_iterates[0] is flows[0]
    with pytest.raises(TypeError, match="list of flow iterates"):
        RAFTAdapter().prediction({"flow": flows[0]})
