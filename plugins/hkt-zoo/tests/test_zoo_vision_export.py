"""``hkt export RUN --format torchvision`` and ``--format timm`` through the CLI: a run of a zoo pair
(a baseline child on a data set of small images made by a module beside the card), exported, loaded
back by the library's own lines (torchvision.models.get_model + load_state_dict; timm.create_model
with pretrained_cfg_overlay, and timm's local-dir folder) and compared with the run's child. Skips
where the library is absent."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from hkt_core.cli.main import main

pytest.importorskip("safetensors")

DATA_MODULE = '''
import torch
from hkt_core.data import DatasetBundle


def images(n_train: int = 48, n_test: int = 16):
    """Three classes of 3x32x32 images, one bright channel each."""
    gen = torch.Generator().manual_seed(0)

    def split(n):
        y = torch.arange(n) % 3
        x = torch.rand(n, 3, 32, 32, generator=gen) * 0.3
        x[torch.arange(n), y] += 0.7
        return torch.utils.data.TensorDataset(x, y)

    return DatasetBundle(split(n_train), split(n_test), ((3, 32, 32),), {"num_classes": 3})
'''

MODELS = {"torchvision": ("resnet34", "mobilenet_v3_small", ""), "timm": ("resnet18", "resnet10t", "")}


def _run(source: str, tmp_path, monkeypatch, capsys, child_extra: str = ""):
    (tmp_path / "tiny_images.py").write_text(DATA_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    parent, child, _ = MODELS[source]
    card = tmp_path / f"tiny-{source}.toml"
    card.write_text(f'''name = "tiny-{source}"
task = "classification"
parent = "{source}"
child = "{source}"
dataset = "tiny_images:images"
input_shapes = [[1, 3, 32, 32]]
stages = 2

[parent_options]
name = "{parent}"
num_classes = 3

[child_options]
name = "{child}"
num_classes = 3
{child_extra}
[train]
epochs = 1
batch_size = 16
lr = 0.001
optimizer = "adamw"
''', encoding="utf-8")
    assert main(["pairs", "add", str(card)]) == 0, capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", f"tiny-{source}", "--method", "baseline", "--no-progress", "--out", str(run)]) == 0, \
        capsys.readouterr().err
    capsys.readouterr()
    return run


def _child(run):
    from hkt_core import load_run

    return load_run(run).child()


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_the_export_loads_with_the_librarys_own_lines_and_equals_the_child(source, hkt_home, tmp_path, monkeypatch,
                                                                          capsys):
    if importlib.util.find_spec(source) is None:
        pytest.skip(f"{source} is not installed (pip install 'hkt-zoo[{source}]')")
    from safetensors.torch import load_file

    extra = 'dropout = 0.1\n' if source == "torchvision" else 'drop_rate = 0.1\n'
    run = _run(source, tmp_path, monkeypatch, capsys, extra)
    assert main(["export", str(run), "--format", source]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    folder = run / "export" / f"child-{source}"
    assert str(folder) in out and "max difference 0" in out, out
    record = json.loads((folder / "hkt_export.json").read_text(encoding="utf-8"))
    assert record["architecture"] == MODELS[source][1] and record["num_classes"] == 3
    assert record["options"] == ({"dropout": 0.1} if source == "torchvision" else {"drop_rate": 0.1})
    assert record["max_difference"] == 0 and record["method"] == "baseline"
    assert not list(run.glob("export/.*.tmp"))

    child = _child(run)
    x = torch.randn(4, 3, 32, 32)
    if source == "torchvision":
        import torchvision

        model = torchvision.models.get_model(record["architecture"], weights=None, num_classes=3, **record["options"])
        model.load_state_dict(load_file(str(folder / "model.safetensors")))   # strict: every key fits
    else:
        import timm

        model = timm.create_model(record["architecture"], pretrained=True, num_classes=3, **record["options"],
                                  pretrained_cfg_overlay={"file": str(folder / "model.safetensors"), "num_classes": 3})
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), child(x))
    assert load_file(str(folder / "model.safetensors")).keys() == child.state_dict().keys()
    if source == "timm" and record["timm_local_dir"]:
        import timm

        local = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        with torch.no_grad():
            assert torch.equal(local(x), child(x))

    # exported again over its own earlier export; a folder of the user's is refused in one line
    assert main(["export", str(run), "--format", source]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    capsys.readouterr()
    assert main(["export", str(run), "--format", source, "--out", str(mine)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an hkt export" in err
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_the_other_librarys_run_is_refused_in_one_line(hkt_home, tmp_path, monkeypatch, capsys):
    if importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("timm") is None:
        pytest.skip("torchvision and timm are needed")
    run = _run("timm", tmp_path, monkeypatch, capsys)
    assert main(["export", str(run), "--format", "torchvision"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "this run's network is 'timm'" in err and "--format safetensors" in err
    assert not (run / "export" / "child-torchvision").exists()
