"""The ``torchvision`` and ``timm`` model sources: options allow-listed and weights only from local
safetensors (checked without the libraries); with a library installed, a registered constructor
builds, a pair builds a Family, trains a step and exports the plain child."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from hkt_core.errors import ConfigError
from hkt_zoo.vision_sources import timm_model, torchvision_model

SOURCES = {"torchvision": torchvision_model, "timm": timm_model}


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("options, message", [
    ({"name": "resnet18", "pretrained": True}, "unknown option(s) pretrained; allowed: name, num_classes"),
    ({"name": "resnet18", "num_classes": "ten"}, "option num_classes = 'ten' is invalid: a number"),
    ({"name": ""}, "name = '' is invalid"),
    ({"name": "resnet18", "weights": "resnet18.pth"}, "pickled checkpoints are never read"),
    ({"name": "resnet18", "weights": "/nonexistent/w.safetensors"}, "does not exist"),
])
def test_bad_options_fail_in_one_line_before_the_library_loads(source, options, message):
    with pytest.raises(ConfigError, match=f"model '{source}'") as info:
        SOURCES[source](**options)
    assert message in str(info.value) and "\n" not in str(info.value)


def _pair(source: str):
    if source == "torchvision":
        return (torchvision_model(name="resnet34", num_classes=5), torchvision_model(name="resnet18", num_classes=5))
    return timm_model(name="resnet18", num_classes=5), timm_model(name="resnet10t", num_classes=5)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_zoo_pair_trains_a_step_in_a_family_and_exports_the_child(source, hkt_manager):
    if importlib.util.find_spec(source) is None:
        pytest.skip(f"{source} is not installed (pip install 'hkt-zoo[{source}]')")
    from hkt_core.align import align
    from hkt_core.family import Family

    assert source in hkt_manager.registry("models")
    torch.manual_seed(0)
    parent, child = _pair(source)
    x = torch.randn(2, 3, 32, 32)
    family = Family(parent, child, align(parent, child, x, stages=3, manager=hkt_manager), manager=hkt_manager)
    loss = family.loss(family(x), torch.tensor([0, 4]))
    loss.backward()
    assert torch.isfinite(loss)
    family.eval()
    with torch.no_grad():
        assert torch.equal(family.export_child().eval()(x), child.eval()(x))
    with pytest.raises(ConfigError, match="closest"):
        SOURCES[source](name="resnet1")
