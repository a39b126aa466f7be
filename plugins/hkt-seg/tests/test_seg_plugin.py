import pytest

from hkt_core.models import build_model
from hkt_core.tasks import SegmentationTask


def test_plugin_loads_and_registers_everything(hkt_manager):
    info = hkt_manager.plugins["seg"]
    assert info.ok, info.error
    assert info.distribution == "hkt-seg"
    assert {"pocketnet", "dense_unet", "pocketnet_demo", "dense_unet_demo"} <= set(info.registered["models"])
    assert info.registered["datasets"] == ["seg-synthetic", "seg-folder", "seg-lits"]
    assert isinstance(hkt_manager.lookup("losses", "seg"), SegmentationTask)
    assert "seg" in hkt_manager.registry("commands")


@pytest.mark.parametrize("name", ["seg-demo", "seg-denseunet-pocketnet"])
def test_pair_cards_build_their_models(hkt_manager, name):
    card = hkt_manager.lookup("pairs", name)
    assert card.task == "seg" and card.stages == 3
    assert [p[1] for p in card.alignment][-1] == "bottleneck"
    assert card.alignment[0][0].startswith("encoder.")
    parent = build_model(card.parent, hkt_manager, **card.parent_options)
    child = build_model(card.child, hkt_manager, **card.child_options)
    blocks = hkt_manager.lookup("adapters", "seg-unet").declared_blocks(child)
    assert all(p[1] in blocks for p in card.alignment)
    assert sum(p.numel() for p in parent.parameters()) > 10 * sum(p.numel() for p in child.parameters())


def test_registered_dataset_factory_with_small_options(hkt_manager):
    bundle = hkt_manager.lookup("datasets", "seg-synthetic")(size=16, n_train=2, n_test=2)
    image, mask = bundle.train[0]
    assert image.shape == (1, 16, 16) and mask.shape == (16, 16)
