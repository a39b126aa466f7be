"""The ``inherit`` method through the real trainer: run folder, budget, reloading the run's child."""

import pytest
import torch
from safetensors.torch import load_file, save_file

import hkt_core
from hkt_core.models import count_parameters
from hkt_core.pairs import PairCard
from hkt_inhernet import InheritedLayer
from inhernet_models import small_cnn, tiny_cnn


@pytest.fixture
def manager(models_on_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HKT_HOME", str(tmp_path / "home"))
    card = PairCard.from_dict({
        "name": "inhernet-test", "task": "classification", "description": "generated templates",
        "parent": f"{models_on_path}:small_cnn", "child": f"{models_on_path}:tiny_cnn",
        "parent_options": {"num_classes": 4}, "child_options": {"num_classes": 4},
        "input_shapes": [[1, 3, 8, 8]], "dataset": f"{models_on_path}:noisy_templates",
        "stages": 2, "train": {"epochs": 1, "batch_size": 40, "optimizer": "adamw", "lr": 0.01,
                               "weight_decay": 0.0, "val_fraction": 0.25},
    })
    from hkt_core.plugins.markers import hookimpl

    class Cards:
        @staticmethod
        @hookimpl
        def hkt_register_pairs(registry):
            registry.add(card.name, card)

    return hkt_core.get_plugin_manager(plugins={"inhernet-test-cards": Cards})


def test_inherit_run_trains_saves_and_reloads_the_compressed_child(manager, tmp_path):
    torch.manual_seed(0)
    parent_file = tmp_path / "parent.safetensors"
    save_file(small_cnn(num_classes=4).state_dict(), str(parent_file))
    run = hkt_core.train("inhernet-test", "inherit", manager=manager, out=tmp_path / "run", seed=0,
                         parent_weights=parent_file, method_options={"kd": True})
    summary = run.summary
    assert summary["method"] == "inherit"
    assert summary["parameters"] <= count_parameters(tiny_cnn(num_classes=4))
    saved = load_file(run.path / "child.safetensors")
    assert any(key.endswith(".heads") for key in saved)
    child = run.child()
    assert any(isinstance(m, InheritedLayer) for m in child.modules())
    assert all(torch.equal(child.state_dict()[k], v) for k, v in saved.items())
    assert count_parameters(child) == summary["parameters"]
