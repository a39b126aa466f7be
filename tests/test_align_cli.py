"""`hkt align`: pair cards, model references, --json, --pair, --plot and bad input."""

from __future__ import annotations

import json

import pytest

from hkt_core.cli.main import main
from hkt_core.plugins import reset_default_manager



@pytest.fixture
def hkt_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HKT_HOME", str(tmp_path / "home"))
    reset_default_manager()
    yield tmp_path / "home"
    reset_default_manager()


RESNETS = ["models_zoo:CifarResNet", "models_zoo:CifarResNet"]


def run_json(capsys, argv):
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)  # stdout holds the JSON and nothing else


def test_json_output_contract(capsys):
    data = run_json(capsys, ["align", *RESNETS, "--input-shape", "1,3,32,32", "--stages", "3", "--json"])
    assert data["version"] == 1 and len(data["pairs"]) == 3
    last = data["pairs"][-1]
    assert (last["parent"], last["child"], last["parent_shape"]) == ("fc", "fc", [1, 10])
    for pair in data["pairs"]:
        assert {"parent", "child", "parent_shape", "child_shape", "score"} <= set(pair)
        assert pair["parent_shape"][0] == 1 and 0 <= pair["score"] <= 1


def test_table_output_and_plot(tmp_path, capsys):
    png, svg = tmp_path / "a.png", tmp_path / "a.svg"
    assert main(["align", *RESNETS, "--input-shape", "1,3,32,32", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "traced with fx" in out and "predictions" in out and "layer1" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["align", *RESNETS, "--input-shape", "1,3,32,32", "--plot", str(svg), "--json"]) == 0
    assert "<svg" in svg.read_text()


def test_several_inputs_and_manual_pairs(capsys):
    data = run_json(capsys, ["align", "models_zoo:TwoFrameFlow", "models_zoo:TwoFrameFlow",
                             "--input-shape", "1,3,16,16", "--input-shape", "1,3,16,16",
                             "--pair", "fnet=fnet", "--pair", "cnet=cnet", "--json"])
    assert [(p["parent"], p["child"]) for p in data["pairs"]] == [("fnet", "fnet"), ("cnet", "cnet"),
                                                                  ("interpolate", "interpolate")]
    assert data["input_shapes"] == [[1, 3, 16, 16], [1, 3, 16, 16]]


def test_pair_card_supplies_models_shapes_stages_and_alignment(hkt_home, capsys):
    pairs = hkt_home / "pairs"
    pairs.mkdir(parents=True)
    (pairs / "zoo-resnets.toml").write_text(
        'name = "zoo-resnets"\ntask = "classification"\nparent = "models_zoo:CifarResNet"\n'
        'child = "models_zoo:CifarResNet"\ninput_shapes = [[1, 3, 32, 32]]\ndataset = "digits"\nstages = 3\n'
        '[parent_options]\ndepth = 14\n[child_options]\ndepth = 8\nwidth = 8\n')
    data = run_json(capsys, ["align", "zoo-resnets", "--json"])
    assert len(data["pairs"]) == 3 and data["input_shapes"] == [[1, 3, 32, 32]]
    assert data["pairs"][0]["child_shape"][1] == 8
    with open(pairs / "zoo-resnets.toml", "a") as fh:
        fh.write('[alignment]\npairs = [["layer2", "layer1"], ["layer3", "layer3"]]\n')
    reset_default_manager()
    data = run_json(capsys, ["align", "zoo-resnets", "--json"])
    assert [p["parent"] for p in data["pairs"]] == ["layer2", "layer3", "fc"]


@pytest.mark.parametrize("argv, message", [
    (["align", *RESNETS], "needs --input-shape"),
    (["align", *RESNETS, "--input-shape", "1,3,x"], "--input-shape '1,3,x' is invalid"),
    (["align", *RESNETS, "--input-shape", "1,4,32,32"], "rejected example input shape"),
    (["align", *RESNETS, "--input-shape", "1,3,32,32", "--stages", "30"], "stages=30 needs 29"),
    (["align", *RESNETS, "--input-shape", "1,3,32,32", "--pair", "layer1"], "expected PARENT_NODE=CHILD_NODE"),
    (["align", *RESNETS, "--input-shape", "1,3,32,32", "--pair", "layer9=layer1"], "unknown parent node 'layer9'"),
    (["align", *RESNETS, "--input-shape", "1,3,32,32", "--method", "activation"], "at least 8 samples"),
    (["align", *RESNETS, "--input-shape", "1,3,32,32", "--plot", "a.gif"], "use .png or .svg"),
    (["align", "a", "b", "c"], "expected PAIR or PARENT CHILD"),
])
def test_bad_input_exits_2_with_a_clear_message(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
