"""Bad inputs a careful new user tries: each gets one line (exit 2) and nothing else breaks."""

from __future__ import annotations

import types

import pytest

import hkt_core
from hkt_core.cli.main import main
from hkt_core.config import to_toml
from hkt_core.plugins.markers import hookimpl
from hkt_core.pairs import user_pairs_dir


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_non_utf8_and_unreadable_user_cards_are_listed_as_problems(capsys):
    folder = user_pairs_dir()
    folder.mkdir(parents=True)
    (folder / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    (folder / "folder.toml").mkdir()
    hkt_core.reset_default_manager()
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    assert "latin1.toml" in out and "not UTF-8" in out
    assert "folder.toml" in out and "is a directory" in out
    assert main(["list", "pairs"]) == 0  # everything else keeps working
    assert "digits-demo" in capsys.readouterr().out


def test_pairs_add_a_directory_or_a_non_utf8_card_is_one_line(tmp_path, capsys):
    assert main(["pairs", "add", str(tmp_path)]) == 2
    assert "is a directory" in _one_line(capsys)
    card = tmp_path / "card.toml"
    card.write_bytes(b'name = "\xff\xfe"\n')
    assert main(["pairs", "add", str(card)]) == 2
    assert "not UTF-8" in _one_line(capsys)
    assert not user_pairs_dir().exists() or not any(user_pairs_dir().iterdir())


def _plugin_raising(exc: BaseException):
    @hookimpl
    def hkt_register_mixtures(registry):
        registry.add("half-registered", object)
        raise exc

    return types.SimpleNamespace(hkt_register_mixtures=hkt_register_mixtures)


def test_plugin_hook_raising_system_exit_or_base_exception_is_isolated():
    class Odd(BaseException):
        pass

    manager = hkt_core.get_plugin_manager(plugins={"exits": _plugin_raising(SystemExit(3)),
                                                   "odd": _plugin_raising(Odd("odd failure"))})
    assert manager.plugins["exits"].error.startswith("SystemExit: 3")
    assert manager.plugins["odd"].error.startswith("Odd: odd failure")
    assert "half-registered" not in manager.registry("mixtures")
    assert "ga" in manager.registry("mixtures")


def test_keyboard_interrupt_in_a_plugin_still_stops_hkt():
    with pytest.raises(KeyboardInterrupt):
        hkt_core.get_plugin_manager(plugins={"ctrl-c": _plugin_raising(KeyboardInterrupt())})


@pytest.mark.parametrize("stages", ["0", "1", "-3"])
def test_align_stages_below_two_is_one_line_in_cli_and_api(stages, capsys):
    from hkt_core.align import align
    from test_train_support import make_child, make_parent

    assert main(["align", "test_train_support:make_parent", "test_train_support:make_child",
                 "--input-shape", "1,1,8,8", "--stages", stages]) == 2
    err = _one_line(capsys)
    assert f"stages={stages} is invalid: an integer >= 2" in err
    import torch

    with pytest.raises(hkt_core.AlignmentError, match=f"stages={stages} is invalid: an integer >= 2"):
        align(make_parent(), make_child(), torch.zeros(1, 1, 8, 8), stages=int(stages))


@pytest.mark.parametrize("setting, field", [("train.epochs=1.9", "epochs"), ("train.seed=1.7", "seed"),
                                            ("train.batch_size=true", "batch_size")])
def test_integer_fields_refuse_non_integers(setting, field):
    from hkt_core.train.api import resolve
    from test_train_support import manager_with, tiny_card

    with pytest.raises(hkt_core.ConfigError, match=f"TrainConfig.{field} = .* must be an integer"):
        resolve(tiny_card(), "baseline", manager=manager_with(), settings=[setting])
    ok = resolve(tiny_card(), "baseline", manager=manager_with(), settings=["train.epochs=3.0"])
    assert ok.train.epochs == 3 and type(ok.train.epochs) is int


def test_huge_seed_and_rejected_dataset_options_are_one_line(tmp_path, capsys):
    assert main(["train", "digits-demo", "--method", "baseline", "--seed", "99999999999999999999",
                 "--out", str(tmp_path / "r")]) == 2
    assert "TrainConfig.seed = 99999999999999999999 is invalid" in _one_line(capsys)
    assert not (tmp_path / "r").exists()
    assert main(["train", "digits-demo", "--method", "baseline", "--epochs", "1", "--set",
                 "dataset.test_fraction=0.995", "--out", str(tmp_path / "r2"), "--no-progress"]) == 2
    assert "dataset 'digits' rejected options" in _one_line(capsys)


CARD = to_toml({"name": "checked-pair", "task": "classification", "parent": "digits_cnn_large",
                "child": "digits_cnn_small", "input_shapes": [[1, 1, 8, 8]], "dataset": "digits", "stages": 2})


@pytest.mark.parametrize("old, new, message", [
    ('task = "classification"', 'task = "clasification"', "task = 'clasification' does not exist"),
    ('parent = "digits_cnn_large"', 'parent = "digits_cnn_huge"', "parent = 'digits_cnn_huge' does not exist"),
    ('child = "digits_cnn_small"', 'child = "no_such_module_here:net"', "child = 'no_such_module_here:net' does not"),
    ('child = "digits_cnn_small"', 'child = "test_train_support:MODULE"', "not a callable"),
    ('dataset = "digits"', 'dataset = "digitz"', "dataset = 'digitz' does not exist"),
    ("stages = 2", "stages = 9", "stages = 9 cannot be aligned"),
])
def test_pairs_add_checks_names_and_stages_before_storing(tmp_path, capsys, old, new, message):
    card = tmp_path / "card.toml"
    card.write_text(CARD.replace(old, new), encoding="utf-8")
    assert main(["pairs", "add", str(card)]) == 2
    assert message in _one_line(capsys)
    assert not user_pairs_dir().exists() or not any(user_pairs_dir().iterdir())


def test_pairs_add_stores_a_card_that_checks_out(tmp_path, capsys):
    card = tmp_path / "card.toml"
    card.write_text(CARD, encoding="utf-8")
    assert main(["pairs", "add", str(card)]) == 0
    assert (user_pairs_dir() / "checked-pair.toml").is_file()
