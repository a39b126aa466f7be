"""torchvision's RAFT models through the engine: registration, export tracing, block names, alignment.

Skipped when torchvision is not installed (it is the plugin's optional ``torchvision`` extra).
Frames are 128x128, the smallest torchvision's correlation pyramid accepts, with 2 flow updates.
"""

import pytest
import torch

torchvision = pytest.importorskip("torchvision")

from hkt_core.adapters import adapter_for  # noqa: E402
from hkt_core.align import align, resolve  # noqa: E402
from hkt_core.config import HKTConfig  # noqa: E402
from hkt_core.errors import AlignmentError, ConfigError, TraceError  # noqa: E402
from hkt_core.family import Family  # noqa: E402
from hkt_core.models import build_model  # noqa: E402
from hkt_core.trace import trace  # noqa: E402
from hkt_flow.target import iterates  # noqa: E402
from hkt_flow.task import sequence_loss  # noqa: E402
from hkt_flow.torchvision_models import CONTEXT_BLOCK, FEATURE_BLOCK, TorchvisionRAFTAdapter  # noqa: E402

UPDATES = 2
SHAPE = (1, 3, 128, 128)
PAIRS = [(FEATURE_BLOCK, FEATURE_BLOCK), (CONTEXT_BLOCK, CONTEXT_BLOCK)]


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    with torch.no_grad():
        parent = build_model("tv_raft_large", num_flow_updates=UPDATES)
        child = build_model("tv_raft_small", num_flow_updates=UPDATES)
    inputs = TorchvisionRAFTAdapter().example_inputs(child, [SHAPE])
    return parent, child, inputs


@pytest.fixture(scope="module")
def alignment(pair):
    parent, child, inputs = pair
    torch.set_num_threads(1)
    return align(parent, child, inputs, pairs=PAIRS)


def test_registered_models_are_torchvisions_raft_without_weights():
    from torchvision.models.optical_flow import RAFT

    large = build_model("tv_raft_large")
    small = build_model("tv_raft_small", num_flow_updates=3)
    assert isinstance(large, RAFT) and isinstance(small, RAFT)
    # torchvision's published parameter counts for raft_large / raft_small
    assert sum(p.numel() for p in large.parameters()) == 5_257_536
    assert sum(p.numel() for p in small.parameters()) == 990_162
    assert isinstance(adapter_for(large), TorchvisionRAFTAdapter)
    assert TorchvisionRAFTAdapter().concrete_args(large) == {"num_flow_updates": 12}
    assert TorchvisionRAFTAdapter().concrete_args(small) == {"num_flow_updates": 3}


def test_a_model_built_directly_with_torchvision_is_claimed_too():
    from torchvision.models.optical_flow import raft_small

    model = raft_small(weights=None)
    assert isinstance(adapter_for(model), TorchvisionRAFTAdapter)
    assert TorchvisionRAFTAdapter().concrete_args(model) == {"num_flow_updates": 12}


@pytest.mark.parametrize("options, fault", [
    ({"weights": "DEFAULT"}, "weights=None only"),
    ({"num_flow_updates": 0}, "positive integer"),
])
def test_bad_options_are_refused_before_anything_is_built(options, fault):
    with pytest.raises(ConfigError, match=fault):
        build_model("tv_raft_large", **options)


def test_example_inputs_follow_torchvisions_convention_and_size_limit():
    adapter = TorchvisionRAFTAdapter()
    first, second = adapter.example_inputs(None, [SHAPE])
    assert first.shape == SHAPE and first.min() >= -1 and first.max() <= 1
    assert torch.equal(second, torch.roll(first, 1, dims=-1))
    with pytest.raises(ValueError, match="at least 128"):
        adapter.example_inputs(None, [(1, 3, 64, 64)])


def test_too_small_frames_give_a_trace_error_naming_the_limit(pair):
    _, child, _ = pair
    frames = (torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    with pytest.raises(TraceError, match="128"):
        trace(child, frames)


def test_export_graph_names_the_three_blocks_and_reproduces_the_model(pair):
    _, child, inputs = pair
    traced = trace(child, inputs)
    assert traced.backend == "export"  # torch.fx cannot trace torchvision's forward
    fnet, cnet, flow = resolve(traced.gm, [FEATURE_BLOCK, CONTEXT_BLOCK, traced.prediction])
    assert traced.shape(FEATURE_BLOCK) == (2, 128, 16, 16)      # both frames at 1/8
    assert traced.shape(CONTEXT_BLOCK) == (1, 160, 16, 16)      # 96 hidden + 64 context
    assert traced.shape(traced.prediction) == (1, 2, 128, 128)  # final flow, full resolution
    # the graph's prediction is the model's final flow
    child.eval()
    with torch.no_grad():
        expected = child(*inputs, num_flow_updates=UPDATES)
        got = traced.gm(*inputs, num_flow_updates=UPDATES)
    assert len(expected) == UPDATES
    assert torch.allclose(got[-1], expected[-1], atol=1e-5)
    assert torch.allclose(got[0], expected[0], atol=1e-5)


def test_align_large_to_small_on_the_three_paper_blocks(pair, alignment):
    parent, child, inputs = pair
    names = [(p.parent, p.child) for p in alignment.pairs]
    assert names[:2] == PAIRS
    parent_pred = trace(parent, inputs).prediction
    child_pred = trace(child, inputs).prediction
    assert names[2] == (parent_pred, child_pred)
    shapes = [(p.parent_shape, p.child_shape) for p in alignment.pairs]
    assert shapes == [((2, 256, 16, 16), (2, 128, 16, 16)),
                      ((1, 256, 16, 16), (1, 160, 16, 16)),
                      ((1, 2, 128, 128), (1, 2, 128, 128))]
    assert alignment.pairs[2].reason == "predictions"


def test_hkt_flow_block_names_are_refused_with_the_valid_ones(pair):
    parent, child, inputs = pair
    with pytest.raises(AlignmentError, match="unknown parent node 'fnet'"):
        align(parent, child, inputs, pairs=[("fnet", "fnet")])


def test_prediction_carries_the_iterates_for_the_sequence_loss(pair):
    _, child, inputs = pair
    child.eval()
    with torch.no_grad():
        output = child(*inputs, num_flow_updates=UPDATES)
    final = TorchvisionRAFTAdapter().prediction(output)
    assert final is output[-1]
    assert [t is o for t, o in zip(iterates(final), output)] == [True] * UPDATES
    target = torch.zeros(1, 2, 128, 128)
    gamma = 0.8
    reference = sum(gamma ** (UPDATES - 1 - i) * f.abs().mean() for i, f in enumerate(output))
    assert torch.allclose(sequence_loss(final, target), reference, atol=1e-6)


def test_family_refuses_the_torchvision_models_with_a_clear_error(pair, alignment):
    parent, child, _ = pair
    with pytest.raises(TraceError, match="torch.fx"):
        Family(parent, child, alignment, HKTConfig(task="flow"))
