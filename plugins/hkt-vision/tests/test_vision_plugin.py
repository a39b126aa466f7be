"""Discovery through the installed entry point, and the adapters' contract with the tracer."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hkt_core
from hkt_core.adapters import adapter_for
from hkt_core.models import build_model
from hkt_core.trace.tracer import fx_trace, node_names
from hkt_vision import models
from hkt_vision.adapters import ADAPTERS
from hkt_vision.models import MODELS

VISION_PAIRS = {"cifar-resnet110-resnet20", "cifar-resnet56-resnet20", "cifar100-resnet110-resnet20",
                "mnist1d-resnet56-resnet20", "digits-demo", "digits-cnn-3stage",
                "mnist1d-cnn-tinycnn", "mnist1d-cnn-mlp"}


def shipped_cards():
    """Every card in the plugin's pairs folder (the contract holds for all of them)."""
    from importlib import resources

    return sorted(p.name[:-5] for p in (resources.files("hkt_vision") / "pairs").iterdir() if p.name.endswith(".toml"))


def test_entry_point_loads_cleanly(hkt_manager):
    info = hkt_manager.plugins["vision"]
    assert info.ok, info.error
    assert info.distribution == "hkt-vision"
    assert set(info.registered["models"]) == set(MODELS)
    assert VISION_PAIRS <= set(info.registered["pairs"]) == set(shipped_cards())
    assert set(info.registered["datasets"]) == {"digits", "mnist1d", "cifar10", "cifar100", "imagefolder", "textures",
                                                "tabular"}


def test_lookup_by_name():
    hkt_core.reset_default_manager()
    assert hkt_core.lookup("models", "resnet20") is models.resnet20
    assert callable(hkt_core.lookup("datasets", "digits"))


def test_hkt_list_pairs_shows_the_pairs():
    hkt = Path(sys.executable).with_name("hkt")
    out = subprocess.run([str(hkt), "list", "pairs"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in VISION_PAIRS:
        assert name in out.stdout


#: transformers: no declared blocks, the generic discovery finds their tokens and class-token vector
TOKEN_MODELS = {"digits_vit", "digits_vit_tiny", "tabular_transformer"}


@pytest.mark.parametrize("name", sorted(set(MODELS) - TOKEN_MODELS))
def test_declared_blocks_are_node_names_of_an_fx_trace(hkt_manager, name):
    model = build_model(name, hkt_manager)
    adapter = adapter_for(model, hkt_manager)
    assert adapter in ADAPTERS.values()
    blocks = adapter.declared_blocks(model)
    assert blocks and blocks[-1] == "fc"
    names = set(node_names(fx_trace(model, adapter).graph).values())
    missing = [b for b in blocks if b not in names]
    assert not missing, f"{name}: declared blocks {missing} are not graph values ({sorted(names)})"


def test_pool_is_the_pooled_feature_vector_in_the_graph(hkt_manager):
    from torch.fx.passes.shape_prop import ShapeProp

    model = build_model("resnet110", hkt_manager).eval()
    gm = fx_trace(model, adapter_for(model, hkt_manager))
    ShapeProp(gm).propagate(torch.randn(2, 3, 32, 32))
    shapes = {name: node.meta["tensor_meta"].shape for node, name in node_names(gm.graph).items()
              if "tensor_meta" in node.meta}
    assert tuple(shapes["pool"]) == (2, 64)
    assert tuple(shapes["layer3"]) == (2, 64, 8, 8)
    assert tuple(shapes["fc"]) == (2, 10)


@pytest.mark.parametrize("pair", shipped_cards())
def test_cards_name_registered_parts_and_aligned_nodes(hkt_manager, pair):
    card = hkt_manager.lookup("pairs", pair)
    assert card.task == "classification"
    assert card.task in hkt_manager.registry("losses")
    assert card.dataset in hkt_manager.registry("datasets")
    parent = build_model(card.parent, hkt_manager, **card.parent_options)
    child = build_model(card.child, hkt_manager, **card.child_options)
    parent_names = set(node_names(fx_trace(parent, adapter_for(parent, hkt_manager)).graph).values())
    child_names = set(node_names(fx_trace(child, adapter_for(child, hkt_manager)).graph).values())
    x = torch.randn(*card.input_shapes[0])
    assert parent.eval()(x).shape == child.eval()(x).shape
    if card.alignment is None:  # the heterogeneous pairs: aligned automatically, across kinds
        assert pair.startswith("hetero-")
        alignment = hkt_core.align(parent, child, x, stages=card.stages, manager=hkt_manager)
        kinds = [(p.parent_kind, p.child_kind) for p in alignment.mixing_pairs]
        assert any(a != b for a, b in kinds), alignment.table()
        return
    for p, c in card.alignment:
        assert p in parent_names and c in child_names


def test_paper_pair_mixes_at_the_pooled_features(hkt_manager):
    card = hkt_manager.lookup("pairs", "cifar-resnet110-resnet20")
    assert (card.parent, card.child, card.stages) == ("resnet110", "resnet20", 2)
    assert card.alignment == (("pool", "pool"),)
    assert card.hkt.lam == 0.6
