"""Dotted `--set` overrides and structured config I/O."""

from __future__ import annotations

import pytest

from hkt_core.config import TrainConfig, apply_overrides, parse_value, structure, unstructure
from hkt_core.errors import ConfigError


def test_parse_value_reads_toml_literals():
    assert parse_value("0.05") == 0.05
    assert parse_value("true") is True
    assert parse_value("[0.2, 0.6, 0.2]") == [0.2, 0.6, 0.2]
    assert parse_value("gate") == "gate"


def test_overrides_change_a_copy():
    data = {"train": {"lr": 0.1, "epochs": 3}, "hkt": {"mixture": "ga"}}
    out = apply_overrides(data, ["train.lr=0.05", "hkt.mixture=gate"])
    assert out == {"train": {"lr": 0.05, "epochs": 3}, "hkt": {"mixture": "gate"}}
    assert data["train"]["lr"] == 0.1


@pytest.mark.parametrize("assignment, message", [
    ("train.lr", "expected KEY=VALUE"),
    ("trian.lr=1", "no section 'trian'; sections here: hkt, train"),
    ("train.learning_rate=1", "unknown setting 'learning_rate'; allowed: epochs, lr"),
])
def test_bad_overrides_say_what_is_allowed(assignment, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        apply_overrides({"train": {"lr": 0.1, "epochs": 3}, "hkt": {"mixture": "ga"}}, [assignment])


def test_a_nested_section_that_does_not_exist_names_what_is_there():
    with pytest.raises(ConfigError, match="no section 'train.sched'; 'train' holds setting\\(s\\) epochs, lr$"):
        apply_overrides({"train": {"lr": 0.1, "epochs": 3}}, ["train.sched.kind=cosine"])


def test_card_fields_beyond_stages_point_to_a_card_of_ones_own(capsys):
    """`--set card.child_options.classes=4` cannot change a model: the message says where that is done."""
    from hkt_core.cli.main import main

    assert main(["train", "digits-demo", "--method", "baseline", "--set", "card.child_options.classes=4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no section 'card.child_options'; 'card' holds setting(s) stages" in err[0]
    assert "hkt pairs new" in err[0]


def test_structure_round_trip_and_rules():
    config = TrainConfig(epochs=4, milestones=(0.3, 0.6))
    assert structure(unstructure(config), TrainConfig) == config
    with pytest.raises(ConfigError, match="TrainConfig.milestones"):
        TrainConfig(milestones=(0.8, 0.2))
    with pytest.raises(ConfigError, match="TrainConfig.device = 'tpu' is invalid: must be one of cpu, cuda, auto"):
        structure({"device": "tpu"}, TrainConfig)


def test_open_sections_accept_new_keys_others_stay_strict():
    data = {"train": {"lr": 0.1}, "dataset": {"seed": 0}}
    out = apply_overrides(data, ["dataset.root=/data/cifar", "dataset.seed=2"], open_sections=("dataset",))
    assert out["dataset"] == {"seed": 2, "root": "/data/cifar"}
    with pytest.raises(ConfigError, match="unknown setting 'momentum'"):
        apply_overrides(data, ["train.momentum=0.5"], open_sections=("dataset",))


def test_dataset_options_can_be_set_for_a_run():
    from hkt_core.train.api import resolve

    spec = resolve("digits-demo", "baseline", settings=["dataset.seed=3", "dataset.root=/elsewhere"], out="unused")
    assert spec.card.dataset_options["seed"] == 3 and spec.card.dataset_options["root"] == "/elsewhere"
    untouched = resolve("digits-demo", "baseline", out="unused")
    assert untouched.card.dataset_options["seed"] == 0 and "root" not in untouched.card.dataset_options


def test_the_paper_preset_is_one_setting_away(tmp_path):
    """``--set hkt.preset=paper`` gives the paper's [hkt] settings; other assignments apply over it,
    whichever comes first; an unknown preset is refused with the allowed names."""
    import attrs

    import hkt_core
    from hkt_core.train.api import resolve

    card = attrs.evolve(hkt_core.default_manager().lookup("pairs", "digits-demo"), hkt=hkt_core.HKTConfig())
    assert resolve(card, "hkt", out=tmp_path / "m").hkt == hkt_core.HKTConfig()
    paper = resolve(card, "hkt", out=tmp_path / "p", settings=["hkt.lam=0.5", "hkt.preset=paper"]).hkt
    assert (paper.inherit_loss, paper.alphas, paper.lam) == ("mae", (0.25, 0.5, 0.25), 0.5)
    assert resolve(card, "hkt", out=tmp_path / "q", settings=["hkt.preset=measured"]).hkt == hkt_core.HKTConfig()
    with pytest.raises(hkt_core.ConfigError, match="hkt.preset = 'pape' is invalid: must be one of measured, paper"):
        resolve(card, "hkt", out=tmp_path / "x", settings=["hkt.preset=pape"])
