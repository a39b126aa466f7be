"""Pair cards: validation with reasons, TOML round trip, `hkt pairs add|show`, `hkt list pairs`."""

from __future__ import annotations

import pytest

from hkt_core.cli.main import main
from hkt_core.config import HKTConfig, TrainConfig
from hkt_core.errors import ConfigError
from hkt_core.pairs import PairCard, user_pairs_dir

GOOD = """\
name = "toy-big-small"
task = "classification"
parent = "digits_cnn_large"
child = "digits_cnn_small"
input_shapes = [[1, 1, 8, 8]]
dataset = "digits"
stages = 3
description = "a toy pair"

[child_options]
width_mult = 0.5

[alignment]
pairs = [["layer1", "layer1"], ["pool", "pool"]]

[train]
epochs = 3
lr = 0.05
optimizer = "adamw"

[hkt]
lam = 0.5
alphas = [0.2, 0.6, 0.2]
mixture = "gate"
"""


def write(tmp_path, text, name="card.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_card_reads_with_defaults_and_settings(tmp_path):
    card = PairCard.from_toml(write(tmp_path, GOOD))
    assert card.name == "toy-big-small" and card.stages == 3
    assert card.input_shapes == ((1, 1, 8, 8),)
    assert card.alignment == (("layer1", "layer1"), ("pool", "pool"))
    assert card.train == TrainConfig(epochs=3, lr=0.05, optimizer="adamw")
    assert card.hkt == HKTConfig(lam=0.5, alphas=(0.2, 0.6, 0.2), mixture="gate")
    assert card.child_options == {"width_mult": 0.5}


def test_card_round_trips_through_toml(tmp_path):
    card = PairCard.from_toml(write(tmp_path, GOOD))
    again = PairCard.from_toml(write(tmp_path, card.to_toml(), "again.toml"))
    assert again == card


@pytest.mark.parametrize("change, message", [
    (("name = \"toy-big-small\"", "name = \"Toy_Pair\""), "PairCard.name = 'Toy_Pair' is invalid: lowercase"),
    (("dataset = \"digits\"\n", ""), "missing required key(s) dataset"),
    (("stages = 3", "stages = 1"), "PairCard.stages = 1 is invalid"),
    (("stages = 3", "stages = 5"), "alignment has 2 pairs but stages = 5"),
    (("input_shapes = [[1, 1, 8, 8]]", "input_shapes = [[1, -3]]"), "each shape is a list of positive integers"),
    (("lam = 0.5", "lam = 1.5"), "HKTConfig.lam = 1.5 is invalid: must be a number in [0.0, 1.0]"),
    (("alphas = [0.2, 0.6, 0.2]", "alphas = [0.5, 0.4, 0.1]"), "max(a1, a3) <= a2"),
    (("epochs = 3", "epochs = 0"), "TrainConfig.epochs = 0 is invalid: must be an integer >= 1"),
    (("optimizer = \"adamw\"", "optimizer = \"adam\""), "must be one of sgd, adamw"),
    (("lr = 0.05", "learning_rate = 0.05"), "unknown setting(s) learning_rate"),
    (("description = \"a toy pair\"", "colour = \"red\""), "unknown key(s) colour"),
    (("pairs = [[\"layer1\", \"layer1\"], [\"pool\", \"pool\"]]", "pairs = [[\"layer1\"]]"), "[alignment] pairs ="),
    (("[train]", "[train\n"), "not valid TOML"),
])
def test_bad_cards_are_refused_with_the_reason(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        PairCard.from_toml(write(tmp_path, GOOD.replace(old, new)))
    assert message in str(info.value)


def test_pairs_add_stores_a_card_and_lists_it(tmp_path, capsys):
    assert main(["pairs", "add", str(write(tmp_path, GOOD))]) == 0
    assert (user_pairs_dir() / "toy-big-small.toml").is_file()
    capsys.readouterr()
    assert main(["list", "pairs", "toy-*"]) == 0
    out = capsys.readouterr().out
    assert "toy-big-small" in out and "a toy pair" in out and "[user]" in out
    assert main(["pairs", "show", "toy-big-small"]) == 0
    shown = capsys.readouterr().out
    assert 'mixture = "gate"' in shown and "from plugin user" in shown


def test_pairs_add_refuses_a_bad_card_and_writes_nothing(tmp_path, capsys):
    bad = write(tmp_path, GOOD.replace("lam = 0.5", "lam = 7"))
    assert main(["pairs", "add", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "HKTConfig.lam = 7.0 is invalid" in err
    folder = user_pairs_dir()
    assert not folder.exists() or not any(folder.iterdir())


def test_pairs_add_refuses_to_overwrite_without_force(tmp_path, capsys):
    card = write(tmp_path, GOOD)
    assert main(["pairs", "add", str(card)]) == 0
    assert main(["pairs", "add", str(card)]) == 2
    assert "already" in capsys.readouterr().err
    assert main(["pairs", "add", "--force", str(card)]) == 0


def test_pairs_show_unknown_name_lists_closest(capsys):
    assert main(["pairs", "show", "no-such-pair"]) == 2
    assert "unknown pairs 'no-such-pair'" in capsys.readouterr().err
