"""torchvision's RAFT models through the engine: registration, tracing, block names, alignment, HKT.

Skipped when torchvision is not installed (it is the plugin's optional ``torchvision`` extra).
Frames are 128x128, the smallest torchvision's correlation pyramid accepts, with 2 flow updates.
"""

import pytest
import torch

torchvision = pytest.importorskip("torchvision")

from torchvision.models.optical_flow import RAFT, raft_small  # noqa: E402

from hkt_core.adapters import adapter_for  # noqa: E402
from hkt_core.align import align, resolve  # noqa: E402
from hkt_core.config import HKTConfig  # noqa: E402
from hkt_core.errors import AlignmentError, ConfigError, TraceError  # noqa: E402
from hkt_core.family import Family  # noqa: E402
from hkt_core.models import build_model  # noqa: E402
from hkt_core.trace import trace  # noqa: E402
from hkt_core import default_manager  # noqa: E402
from hkt_flow.target import iterates  # noqa: E402
from hkt_flow.task import sequence_loss  # noqa: E402
from hkt_flow.torchvision_fx import TraceableRAFT  # noqa: E402
from hkt_flow.torchvision_models import CONTEXT_BLOCK, FEATURE_BLOCK, TorchvisionRAFTAdapter  # noqa: E402

UPDATES = 2
SHAPE = (1, 3, 128, 128)
PAIRS = [(FEATURE_BLOCK, FEATURE_BLOCK), (CONTEXT_BLOCK, CONTEXT_BLOCK)]
FINAL = f"upsampler#{UPDATES}"


def _inputs():
    return TorchvisionRAFTAdapter().example_inputs(None, [SHAPE])


@pytest.fixture(scope="module")
def plain_pair():
    """torchvision's own class: torch.export graphs, alignment only."""
    torch.manual_seed(0)
    parent = build_model("tv_raft_large", default_manager(), num_flow_updates=UPDATES, traceable=False)
    child = build_model("tv_raft_small", default_manager(), num_flow_updates=UPDATES, traceable=False)
    return parent, child, _inputs()


@pytest.fixture(scope="module")
def plain_alignment(plain_pair):
    parent, child, inputs = plain_pair
    return align(parent, child, inputs, pairs=PAIRS)


@pytest.fixture(scope="module")
def plain_child_trace(plain_pair):
    _, child, inputs = plain_pair
    return trace(child, inputs, adapter_for(child, default_manager()))


@pytest.fixture(scope="module")
def fx_pair():
    """The registered default: the same networks with an fx-traceable forward."""
    torch.manual_seed(0)
    parent = build_model("tv_raft_large", default_manager(), num_flow_updates=UPDATES)
    child = build_model("tv_raft_small", default_manager(), num_flow_updates=UPDATES)
    return parent, child, _inputs()


def test_registered_models_are_torchvisions_raft_without_weights():
    large = build_model("tv_raft_large", default_manager())
    small = build_model("tv_raft_small", default_manager(), num_flow_updates=3, traceable=False)
    assert isinstance(large, TraceableRAFT) and isinstance(large, RAFT)
    assert type(small) is RAFT
    # torchvision's published parameter counts for raft_large / raft_small
    assert sum(p.numel() for p in large.parameters()) == 5_257_536
    assert sum(p.numel() for p in small.parameters()) == 990_162
    assert list(TraceableRAFT(raft_small(weights=None)).state_dict()) == list(small.state_dict())
    assert isinstance(adapter_for(large, default_manager()), TorchvisionRAFTAdapter)
    adapter = TorchvisionRAFTAdapter()
    assert adapter.concrete_args(large) == {"num_flow_updates": None}  # reads its own count (12)
    assert adapter.concrete_args(small) == {"num_flow_updates": 3}
    assert adapter.declared_blocks(large) == [FEATURE_BLOCK, CONTEXT_BLOCK, "upsampler#12"]
    assert adapter.declared_blocks(small) == [FEATURE_BLOCK, CONTEXT_BLOCK]


def test_a_model_built_directly_with_torchvision_is_claimed_too():
    model = raft_small(weights=None)
    assert isinstance(adapter_for(model, default_manager()), TorchvisionRAFTAdapter)
    assert TorchvisionRAFTAdapter().concrete_args(model) == {"num_flow_updates": 12}


@pytest.mark.parametrize("options, fault", [
    ({"weights": "DEFAULT"}, "weights=None only"),
    ({"num_flow_updates": 0}, "positive integer"),
])
def test_bad_options_are_refused_before_anything_is_built(options, fault):
    with pytest.raises(ConfigError, match=fault):
        build_model("tv_raft_large", default_manager(), **options)


def test_example_inputs_follow_torchvisions_convention():
    adapter = TorchvisionRAFTAdapter()
    first, second = adapter.example_inputs(None, [SHAPE])
    assert first.shape == SHAPE and first.min() >= -1 and first.max() <= 1
    assert torch.equal(second, torch.roll(first, 1, dims=-1))


def test_adapter_meets_the_core_contract():
    from hkt_core.plugins import default_manager
    from hkt_core.testing.contracts import check_entry

    check_entry("adapters", "tv_raft", default_manager())


@pytest.mark.parametrize("name", ["tv_raft_large", "tv_raft_small"])
def test_traceable_form_computes_torchvisions_flows(name):
    torch.manual_seed(1)
    model = build_model(name, default_manager(), num_flow_updates=UPDATES, traceable=False).eval()
    wrapped = TraceableRAFT(model).eval()
    inputs = _inputs()
    with torch.no_grad():
        expected = model(*inputs, num_flow_updates=UPDATES)
        got = wrapped(*inputs)
    assert len(got) == len(expected) == UPDATES
    for g, e in zip(got, expected):
        assert torch.equal(g, e)


def test_too_small_frames_give_a_trace_error_naming_the_limit(fx_pair, plain_pair):
    frames = (torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    for model in (fx_pair[1], plain_pair[1]):
        with pytest.raises(TraceError, match="128"):
            trace(model, frames, adapter_for(model, default_manager()))


def test_fx_graph_names_the_three_blocks_and_reproduces_the_model(fx_pair):
    _, child, inputs = fx_pair
    traced = trace(child, inputs, adapter_for(child, default_manager()))
    assert traced.backend == "fx"
    assert traced.prediction == FINAL
    resolve(traced.gm, [FEATURE_BLOCK, CONTEXT_BLOCK, FINAL])
    assert traced.shape(FEATURE_BLOCK) == (2, 128, 16, 16)  # both frames at 1/8
    assert traced.shape(CONTEXT_BLOCK) == (1, 160, 16, 16)  # 96 hidden + 64 context
    assert traced.shape(FINAL) == (1, 2, 128, 128)          # final flow, full resolution
    child.eval()
    with torch.no_grad():
        expected = child(*inputs)
        got = traced.gm(*inputs)  # called like the model: the update count is the model's
    assert all(torch.equal(g, e) for g, e in zip(got, expected))


def test_export_graph_of_torchvisions_class_names_the_blocks(plain_pair, plain_child_trace):
    _, child, inputs = plain_pair
    traced = plain_child_trace
    assert traced.backend == "export"  # torch.fx cannot trace torchvision's forward
    resolve(traced.gm, [FEATURE_BLOCK, CONTEXT_BLOCK, traced.prediction])
    assert traced.shape(FEATURE_BLOCK) == (2, 128, 16, 16)
    assert traced.shape(CONTEXT_BLOCK) == (1, 160, 16, 16)
    assert traced.shape(traced.prediction) == (1, 2, 128, 128)
    child.eval()
    with torch.no_grad():
        expected = child(*inputs, num_flow_updates=UPDATES)
        got = traced.gm(*inputs, num_flow_updates=UPDATES)
    assert torch.allclose(got[-1], expected[-1], atol=1e-5)


SHAPES = [((2, 256, 16, 16), (2, 128, 16, 16)),
          ((1, 256, 16, 16), (1, 160, 16, 16)),
          ((1, 2, 128, 128), (1, 2, 128, 128))]


def test_align_torchvisions_classes_on_the_three_paper_blocks(plain_alignment, plain_child_trace):
    alignment = plain_alignment
    names = [(p.parent, p.child) for p in alignment.pairs]
    assert names[:2] == PAIRS
    assert names[2][1] == plain_child_trace.prediction  # an operator's node name in export graphs
    assert [(p.parent_shape, p.child_shape) for p in alignment.pairs] == SHAPES
    assert alignment.pairs[2].reason == "predictions"


def test_align_traceable_forms_with_and_without_given_pairs(fx_pair):
    parent, child, inputs = fx_pair
    for pairs in (PAIRS, None):
        alignment = align(parent, child, inputs, stages=3, pairs=pairs)
        assert [(p.parent, p.child) for p in alignment.pairs] == PAIRS + [(FINAL, FINAL)]
        assert [(p.parent_shape, p.child_shape) for p in alignment.pairs] == SHAPES


def test_hkt_flow_block_names_are_refused(fx_pair):
    parent, child, inputs = fx_pair
    with pytest.raises(AlignmentError, match="unknown parent node 'fnet'"):
        align(parent, child, inputs, pairs=[("fnet", "fnet")])


def test_prediction_carries_the_iterates_for_the_sequence_loss(fx_pair):
    _, child, inputs = fx_pair
    child.eval()
    with torch.no_grad():
        output = child(*inputs)
    final = TorchvisionRAFTAdapter().prediction(output)
    assert final is output[-1]
    assert [t is o for t, o in zip(iterates(final), output)] == [True] * UPDATES
    target = torch.zeros(1, 2, 128, 128)
    reference = sum(0.8 ** (UPDATES - 1 - i) * f.double().abs().mean() for i, f in enumerate(output))
    assert torch.allclose(sequence_loss(final, target).double(), reference, atol=1e-6)


def test_one_hkt_step_on_the_traceable_pair(fx_pair):
    parent, child, inputs = fx_pair
    alignment = align(parent, child, inputs, stages=3, pairs=PAIRS)
    family = Family(parent, child, alignment, HKTConfig(), task="flow")
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(1, 2, 128, 128, generator=gen)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    out = family(*inputs)
    parts = family.loss_parts(out, target)
    child.eval()
    with torch.no_grad():
        alone = child(*inputs)
    assert torch.allclose(out.native, alone[-1], atol=1e-5)
    assert torch.allclose(parts.l2, sequence_loss(alone, target), atol=1e-5)
    assert torch.isfinite(parts.total)
    parts.total.backward()
    assert all(p.grad is not None for p in child.parameters())
    assert all(p.grad is None for p in parent.parameters())
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())
    child.zero_grad(set_to_none=True)


def test_family_refuses_torchvisions_class_with_a_clear_error(plain_pair, plain_alignment):
    parent, child, _ = plain_pair
    with pytest.raises(TraceError, match="torch.fx"):
        Family(parent, child, plain_alignment, HKTConfig(), task="flow")
