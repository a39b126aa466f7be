"""The example plugin's own tests: installed, discovered, and every registration honours its
contract (the pair: pre-flight with one training step of baseline and HKT)."""

from __future__ import annotations

import torch


def test_the_plugin_is_discovered(hkt_manager):
    info = hkt_manager.plugins["tabular"]
    assert info.ok and info.distribution == "hkt-tabular"
    assert info.registered == {"models": ["wine_transformer", "wine_mlp"], "datasets": ["wine"],
                               "pairs": ["wine-transformer-mlp"]}


def test_every_registration_honours_its_contract(hkt_manager, hkt_contracts):
    for kind in ("datasets", "models", "pairs"):
        assert hkt_contracts.check_all(kind, hkt_manager, plugin="tabular")


def test_the_pair_trains_hkt(hkt_home, hkt_manager, tmp_path):
    import hkt_core

    run = hkt_core.train("wine-transformer-mlp", "hkt", manager=hkt_manager, out=tmp_path / "run", epochs=1,
                         settings=["card.stages=2", "train.batch_size=64"])
    assert run.alignment.stages == 2 and (tmp_path / "run" / "alignment.json").is_file()
    assert 0.0 <= run.summary["test"]["accuracy"] <= 1.0


def test_the_data_is_standardised_on_the_training_split():
    from hkt_tabular.data import wine

    bundle = wine()
    x = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))])
    assert torch.allclose(x.mean(0), torch.zeros(13), atol=1e-5)
    assert len(bundle.train) + len(bundle.test) == 178
