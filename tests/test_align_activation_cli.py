"""`hkt align PAIR --method activation`: the trained parent and the pair's data set, or a clear refusal."""

from __future__ import annotations

import json

import pytest

from hkt_core.cli.main import main
from hkt_core.models import build_model
from hkt_core.plugins import default_manager

pytest.importorskip("hkt_vision")


def test_activation_needs_a_trained_parent(capsys):
    rc = main(["align", "hetero-digits-vit-cnn", "--method", "activation"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "has no trained parent cached" in err and "hkt train hetero-digits-vit-cnn --method parent" in err
    assert len(err.strip().splitlines()) == 1


def test_activation_uses_the_parent_weights_and_the_pairs_data(tmp_path, capsys):
    from safetensors.torch import save_file

    card = default_manager().lookup("pairs", "hetero-digits-vit-cnn")
    weights = tmp_path / "parent.safetensors"
    save_file(build_model(card.parent, default_manager(), **card.parent_options).state_dict(), str(weights))
    argv = ["align", "hetero-digits-vit-cnn", "--method", "activation", "--parent-weights", str(weights),
            "--calibration-samples", "48", "--json"]
    assert main([*argv, "--batch-size", "7"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*argv, "--batch-size", "48"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["method"] == "activation"
    assert first["calibration"] == {"source": "dataset digits (train split)", "samples": 48, "seed": 0}
    assert [(p["parent"], p["child"]) for p in first["pairs"]] == [(p["parent"], p["child"]) for p in second["pairs"]]
    kinds = [(p["parent_kind"], p["child_kind"]) for p in first["pairs"][:-1]]
    assert ("tokens", "map") in kinds
    for a, b in zip(first["pairs"][:-1], second["pairs"][:-1]):
        assert a["cka"] == pytest.approx(b["cka"], abs=1e-5)
    assert main(["align", "hetero-digits-vit-cnn", "--method", "activation", "--parent-weights", str(weights),
                 "--calibration-samples", "4"]) == 2
    assert "--calibration-samples 4 is invalid" in capsys.readouterr().err
