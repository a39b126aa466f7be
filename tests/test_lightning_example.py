"""examples/lightning: the Family inside a LightningModule, bf16 mixed precision, state_dict checkpoints.

Runs when lightning is installed (it is in the test extra); skips cleanly otherwise.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("lightning")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lightning" / "hkt_lightning.py"


def _example():
    spec = importlib.util.spec_from_file_location("hkt_lightning_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the frozen parent is in eval mode on purpose (the Family keeps it so); Lightning warns about any
@pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode at the start of training")
def test_lightning_module_trains_in_bf16_and_round_trips_through_state_dict(tmp_path):
    ex = _example()
    untrained = ex.build()
    child_before = {k: v.clone() for k, v in untrained.family.child.state_dict().items()}
    trained = ex.train(1, tmp_path, precision="bf16-mixed", batch_size=128)
    assert trained.forward_dtype == torch.bfloat16          # the forward ran under autocast
    assert all(p.dtype == torch.float32 for p in trained.parameters())   # the weights did not
    after = trained.family.child.state_dict()
    assert any(not torch.equal(child_before[k], after[k]) for k in child_before if after[k].is_floating_point())

    # checkpoint through state_dict: a fresh module (other initial weights) gets the trained state back
    restored = ex.load_weights(ex.build(seed=1), tmp_path / "hkt.safetensors")
    for k, v in trained.state_dict().items():
        assert torch.equal(restored.state_dict()[k], v), k
    x = ex.toy_data(32, seed=5).tensors[0]
    trained.eval(), restored.eval()
    with torch.no_grad():
        a, b = trained.family(x), restored.family(x)
    assert all(torch.equal(p, q) for p, q in zip(a[:3], b[:3]))
    child = load_file(tmp_path / "child.safetensors")
    assert child.keys() == trained.family.child.state_dict().keys()
