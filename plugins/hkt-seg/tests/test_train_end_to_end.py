import json

import pytest
import torch

import hkt_core
from hkt_core.pairs import PairCard
from hkt_core.train.checkpoint import write_tensors
from hkt_seg.models import dense_unet_demo


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hkt"])
def test_methods_with_a_parent_train_a_tiny_pair(tmp_path, method):
    card = PairCard.from_dict(dict(
        name="seg-tiny", task="seg", parent="dense_unet_demo", child="pocketnet_demo",
        input_shapes=[[1, 1, 16, 16]], dataset="seg-synthetic", stages=3,
        parent_options={"width": 4, "growth": 4, "layers": 2}, child_options={"width": 4},
        dataset_options={"size": 16, "n_train": 24, "n_test": 8},
        alignment={"pairs": [["encoder.2", "encoder.2"], ["bottleneck", "bottleneck"]]},
        train={"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.003}, hkt={"task": "seg"}))
    torch.manual_seed(0)
    parent = dense_unet_demo(width=4, growth=4, layers=2)
    weights = write_tensors(tmp_path / "parent.safetensors", parent.state_dict(), kind="parent")
    run = hkt_core.train(card, method, out=tmp_path / "run", parent_weights=weights, progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["primary_metric"] == "dice"
    assert 0.0 <= summary["test"]["dice"] <= 1.0
    child = run.child()
    assert child(torch.zeros(2, 1, 16, 16)).shape == (2, 3, 16, 16)
    assert summary["parameters"] == sum(p.numel() for p in child.parameters())
