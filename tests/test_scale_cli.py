"""``hkt train digits-demo --method hkt --epochs 1`` with ``--precision bf16``, ``--log tensorboard``
and ``--compile`` (the one test that really compiles: tens of seconds on two cores)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import hkt_core
from hkt_core.cli.main import main

PAIR = "digits-demo"


@pytest.fixture(scope="module")
def parent_weights(tmp_path_factory):
    """A digits-demo parent trained once for this module (one epoch: these tests need a parent, not a good one)."""
    folder = tmp_path_factory.mktemp("digits_parent")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HKT_HOME", str(folder / "home"))
        hkt_core.reset_default_manager()
        if PAIR not in hkt_core.default_manager().registry("pairs"):
            pytest.skip("digits-demo comes with the hkt-vision plugin, not installed here")
        assert main(["train", PAIR, "--method", "parent", "--epochs", "1", "--out", str(folder / "parent"),
                     "--no-progress"]) == 0
        hkt_core.reset_default_manager()
    return folder / "parent" / "child.safetensors"


def _train(parent_weights, run, *options) -> dict:
    assert main(["train", PAIR, "--method", "hkt", "--epochs", "1", "--parent-weights", str(parent_weights),
                 "--out", str(run), "--no-progress", *options]) == 0
    return json.loads((run / "summary.json").read_text())


def test_digits_demo_hkt_in_bf16(parent_weights, tmp_path):
    summary = _train(parent_weights, tmp_path / "run", "--precision", "bf16")
    assert summary["precision"] == "bf16" and summary["compiled"] is False
    floats = [t for t in load_file(tmp_path / "run" / "child.safetensors").values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)
    config = hkt_core.config.read_toml(tmp_path / "run" / "config.toml")
    assert config["train"]["precision"] == "bf16"


def test_digits_demo_hkt_logs_to_tensorboard(parent_weights, tmp_path):
    pytest.importorskip("tensorboard")
    from test_tracking import read_scalars

    _train(parent_weights, tmp_path / "run", "--log", "tensorboard")
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    assert {"train/L1", "train/L2", "train/L3", "val/accuracy", "lr", "step_seconds"} <= set(scalars)


@pytest.mark.slow
def test_digits_demo_hkt_compiled(parent_weights, tmp_path):
    eager = _train(parent_weights, tmp_path / "eager")
    compiled = _train(parent_weights, tmp_path / "compiled", "--compile")
    assert compiled["compiled"] is True and eager["compiled"] is False
    assert "Family's lockstep step" in compiled["compiled_modules"] and "child" in compiled["compiled_modules"]
    # the compiled step computes what the eager one does (up to float32 reassociation)
    ma = [json.loads(line) for line in (tmp_path / "eager" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(line) for line in (tmp_path / "compiled" / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "train_l1", "train_l2", "train_l3", "val_loss"):
        assert mb[0][key] == pytest.approx(ma[0][key], rel=1e-4, abs=1e-5), key
    a, b = load_file(tmp_path / "eager" / "child.safetensors"), load_file(tmp_path / "compiled" / "child.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
