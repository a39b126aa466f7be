"""Registration through the entry point, pair cards, pictures and the `hkt flow show` command."""


import numpy as np
import pytest
import torch

from hkt_core.pairs import PairCard
from hkt_flow.adapter import RAFTAdapter
from hkt_flow.visualize import colour_wheel, comparison_panel, error_to_colour, flow_to_colour, save_panels


def test_plugin_registers_through_its_entry_point(hkt_manager):
    info = hkt_manager.plugins["flow"]
    assert info.ok, info.error
    assert {"raft", "raft_small", "raft_demo_parent", "raft_demo_child"} <= set(hkt_manager.registry("models").names())
    assert isinstance(hkt_manager.lookup("adapters", "raft"), RAFTAdapter)
    assert {"flow-synthetic", "flow-motorcycle", "flying-chairs", "sintel", "kitti-2015", "hd1k"} <= set(
        hkt_manager.registry("datasets").names())
    assert {"flow_epe", "flow_1px", "flow_3px", "flow_5px", "flow_f1_all"} <= set(hkt_manager.registry("metrics").names())
    assert "flow" in hkt_manager.registry("commands")


def test_flow_task_is_the_plugins(hkt_manager):
    """The ``flow`` task must be this plugin's (RAFT sequence loss), not a generic regression."""
    from hkt_flow.task import FlowTask

    entry = hkt_manager.registry("losses").entry("flow")
    assert isinstance(entry.obj, FlowTask), (
        f"task 'flow' is registered by plugin {entry.plugin!r} as {type(entry.obj).__name__}; the core "
        f"should leave the name to hkt-flow")


def test_adapter_claims_registered_models(hkt_manager):
    from hkt_core.adapters import adapter_for
    from hkt_core.models import build_model

    model = build_model("raft_demo_child", hkt_manager, iters=2)
    assert isinstance(adapter_for(model, hkt_manager), RAFTAdapter)


@pytest.mark.parametrize("name", ["flow-demo", "flow-raft-raftsmall"])
def test_pair_cards(hkt_manager, name):
    card = hkt_manager.lookup("pairs", name)
    assert isinstance(card, PairCard) and card.task == "flow" and card.stages == 3
    assert card.alignment == (("fnet", "fnet"), ("cnet", "cnet"))
    bundle = hkt_manager.lookup("datasets", card.dataset)(**{**card.dataset_options, "train_size": 2, "test_size": 1})
    assert tuple(tuple(s[1:]) for s in card.input_shapes) == bundle.input_shapes
    if name == "flow-raft-raftsmall":
        assert (card.parent, card.child) == ("raft", "raft_small")


def test_flow_demo_aligns_on_the_three_paper_blocks(hkt_manager):
    from hkt_core.align import align
    from hkt_core.models import build_model

    card = hkt_manager.lookup("pairs", "flow-demo")
    parent = build_model(card.parent, hkt_manager, **card.parent_options)
    child = build_model(card.child, hkt_manager, **card.child_options)
    inputs = RAFTAdapter().example_inputs(child, card.input_shapes)
    alignment = align(parent, child, inputs, stages=3, pairs=card.alignment)
    names = [(p.parent, p.child) for p in alignment.pairs]
    assert names == [("fnet", "fnet"), ("cnet", "cnet"), ("upsampler#4", "upsampler#4")]


def test_colour_wheel_conventions():
    wheel = colour_wheel()
    assert wheel.shape == (55, 3) and wheel[0].tolist() == [255, 0, 0]
    right = flow_to_colour(np.array([[[1.0, 0.0]]]), max_flow=1.0)
    zero = flow_to_colour(np.zeros((1, 1, 2)), max_flow=1.0)
    assert right[0, 0].tolist() == [255, 0, 0] and zero[0, 0].tolist() == [255, 255, 255]
    half = flow_to_colour(np.array([[[0.5, 0.0]]]), max_flow=1.0)  # half saturation
    assert half[0, 0].tolist() == [255, 128, 128]
    invalid = flow_to_colour(np.ones((1, 2, 2)), valid=np.array([[True, False]]))
    assert invalid[0, 1].tolist() == [0, 0, 0]
    err = error_to_colour(np.array([[0.0, 5.0, 50.0]]), max_error=5.0)
    assert err[0, 0].tolist() == [0, 0, 0] and err[0, 1].tolist() == [255, 255, 255] == err[0, 2].tolist()


def test_panel_and_png(tmp_path):
    flow = np.random.default_rng(0).normal(size=(8, 12, 2))
    row = comparison_panel(np.zeros((8, 12, 3)), flow, flow + 1, np.ones((8, 12), bool))
    assert row.shape == (8, 4 * 12 + 6, 3) and row.dtype == np.uint8
    path = save_panels(tmp_path / "p.png", [row, row], ["caption"], scale=2)
    from PIL import Image

    with Image.open(path) as im:
        assert im.width == 2 * row.shape[1] and im.height > 2 * 2 * 8


def test_flow_show_on_a_run_folder(tmp_path, hkt_manager, monkeypatch):
    """A run folder as the trainer writes it (config.toml + child.safetensors) -> flow.png."""
    from safetensors.torch import save_file

    from hkt_core.cli.main import main
    from hkt_core.config import to_toml
    from hkt_core.models import build_model

    card = hkt_manager.lookup("pairs", "flow-demo")
    data = card.to_dict()
    data["dataset_options"] = {**card.dataset_options, "train_size": 2, "test_size": 2}
    data["child_options"] = {"iters": 1}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(to_toml({"pair": card.name, "method": "baseline", "card": data}))
    child = build_model(card.child, hkt_manager, iters=1)
    save_file({k: v.contiguous() for k, v in child.state_dict().items()}, str(run / "child.safetensors"))
    assert main(["flow", "show", str(run), "--samples", "2", "--scale", "1"]) == 0
    from PIL import Image

    with Image.open(run / "flow.png") as im:
        assert im.width == 4 * 64 + 6 and im.height > 2 * 64
    assert main(["flow", "show", str(run), "--samples", "0"]) == 2
    assert main(["flow", "show", str(tmp_path / "nowhere")]) == 2


def test_registered_entries_meet_the_core_contracts(hkt_manager):
    from hkt_core.testing.contracts import check_entry

    for kind, name in [("losses", "flow"), ("adapters", "raft"), ("datasets", "flow-motorcycle"),
                       ("datasets", "flying-chairs"), ("datasets", "sintel"), ("datasets", "kitti-2015"),
                       ("datasets", "hd1k"), ("metrics", "flow_epe"), ("metrics", "flow_f1_all")]:
        check_entry(kind, name, hkt_manager)
    task = hkt_manager.lookup("losses", "flow")
    prediction, (flow, valid) = task.example(6, torch.Generator().manual_seed(1))
    for metric in task.metrics():  # statistics add up across batches
        halves = metric.stats(prediction[:3], (flow[:3], valid[:3])) + metric.stats(prediction[3:], (flow[3:], valid[3:]))
        assert torch.allclose(metric.stats(prediction, (flow, valid)), halves)
