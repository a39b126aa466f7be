"""The engine's Family runs the RAFT pair: mixing at fnet and cnet, sequence loss on the native stream."""

import torch

from hkt_core.align import align
from hkt_core.config import HKTConfig
from hkt_core.family import Family
from hkt_core.models import build_model
from hkt_core import default_manager
from hkt_flow.adapter import RAFTAdapter
from hkt_flow.synthetic import SyntheticFlow
from hkt_flow.task import sequence_loss


def test_one_hkt_step_on_the_demo_pair():
    torch.manual_seed(0)
    parent = build_model("raft_demo_parent", default_manager(), iters=2)
    child = build_model("raft_demo_child", default_manager(), iters=2)
    inputs = RAFTAdapter().example_inputs(child, [(1, 3, 64, 64)])
    alignment = align(parent, child, inputs, stages=3, pairs=[("fnet", "fnet"), ("cnet", "cnet")])
    assert [p.parent for p in alignment.pairs] == ["fnet", "cnet", "upsampler#2"]
    family = Family(parent, child, alignment, HKTConfig(), task="flow")
    (image1, image2), (flow, valid) = SyntheticFlow(1)[0]
    target = (flow[None], valid[None])
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    out = family(image1[None], image2[None])
    parts = family.loss_parts(out, target)
    # the native output carries its first iterate: L2 is the sequence loss of the child alone
    child.eval()
    with torch.no_grad():
        alone = child(image1[None], image2[None])
    assert torch.allclose(out.native, alone[-1], atol=1e-5)
    assert torch.allclose(parts.l2, sequence_loss(alone, target), atol=1e-5)
    parts.total.backward()
    assert all(p.grad is not None for p in child.parameters())
    assert all(p.grad is None for p in parent.parameters())
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())
