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


def _image_folder(root, per_class: int = 16) -> None:
    """Three classes of 32x32 RGB images (one bright channel each, with noise) as PNG files."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for c, name in enumerate(("red", "green", "blue")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = torch.rand(32, 32, 3, generator=gen) * 80
                pixels[..., c] += 150
                Image.fromarray(pixels.clamp(0, 255).to(torch.uint8).numpy()).save(folder / f"{i}.png")


def test_a_torchvision_pair_trains_from_the_cli_on_an_image_folder(hkt_home, tmp_path, capsys):
    """`hkt pairs new` with torchvision models on the imagefolder data set (hkt-vision), `pairs
    check`, `pairs add` and `train --method hkt`, with no wrapper module."""
    if importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("hkt_vision") is None:
        pytest.skip("torchvision and hkt-vision are needed (pip install 'hkt-zoo[torchvision]' hkt-vision)")
    import json
    import re

    from hkt_core.cli.main import main

    root = tmp_path / "images"
    _image_folder(root)
    card = tmp_path / "folder-tv.toml"
    assert main(["pairs", "new", "folder-tv", "--parent", "torchvision", "--child", "torchvision",
                 "--dataset", "imagefolder", "-o", str(card)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give the data directory as the 'root' option" in err[0] and "--dataset-option" in err[0]
    assert not card.exists()
    assert main(["pairs", "new", "folder-tv", "--parent", "torchvision", "--child", "torchvision",
                 "--dataset", "imagefolder", "--dataset-option", f"root={root}", "--dataset-option", "augment=false",
                 "-o", str(card)]) == 0
    text = card.read_text(encoding="utf-8")
    assert f'root = "{root}"' in text and "augment = false" in text and "input_shapes = [[1, 3, 32, 32]]" in text
    text = text.replace("[parent_options]\n", '[parent_options]\nname = "resnet34"\nnum_classes = 3\n')
    text = text.replace("[child_options]\n", '[child_options]\nname = "mobilenet_v3_small"\nnum_classes = 3\n')
    text = re.sub(r"(?m)^epochs = \d+$", "epochs = 1", text)
    text = re.sub(r"(?m)^batch_size = \d+$", "batch_size = 8", text)
    text = text.replace('optimizer = "sgd"', 'optimizer = "adamw"')
    text = re.sub(r"(?m)^lr = [0-9.e-]+$", "lr = 0.001", text)
    card.write_text(text, encoding="utf-8")
    assert main(["pairs", "check", str(card), "--methods", "hkt"]) == 0, capsys.readouterr().err
    assert "pair folder-tv: ok" in capsys.readouterr().out
    assert main(["pairs", "add", str(card)]) == 0
    run = tmp_path / "run"
    assert main(["train", "folder-tv", "--method", "hkt", "--stages", "3", "--parent-epochs", "4", "--no-progress",
                 "--out", str(run)]) == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["epochs"] == 1 and summary["parent"]["source"] == "cache"
    points = json.loads((run / "alignment.json").read_text(encoding="utf-8"))["pairs"]
    assert len(points) == 3 and points[0]["child"].startswith("features.")
