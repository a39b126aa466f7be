"""KD's temperature and weight are the options of the methods that distil (``kd``, ``hkt-kd``,
``fitnet-kd``); the old spelling (``train.kd_temperature``, ``train.kd_weight``: ``--set``, a keyword,
a card's ``[train]``, an old run folder's config.toml) keeps working through
:data:`hkt_core.config.MOVED_SETTINGS`."""

from __future__ import annotations

import json
import tomllib
import warnings

import attrs
import pytest

import hkt_core
import hkt_core.config as config_module
from hkt_core.config import TrainConfig, to_toml
from hkt_core.errors import ConfigError
from hkt_core.train.folders.identity import differences, read_history
from hkt_core.train.setup.api import resolve
from hkt_core.train.setup.reuse import train_or_reuse

from test_train_support import Interrupt, manager_with, stop_after, tiny_card


def _losses(folder):
    return [r["train_loss"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]


def _as_written_before(config_file):
    """config.toml as hkt wrote it before the move: KD's settings under the run's [train] and the
    card's (every run recorded them, whatever its method), none under [method_options]."""
    data = tomllib.loads(config_file.read_text())
    options = data.get("method_options", {})
    recorded = {"kd_temperature": options.pop("temperature", 4.0), "kd_weight": options.pop("weight", 0.5)}
    data["train"].update(recorded)
    data["card"]["train"].update({"kd_temperature": 4.0, "kd_weight": 0.5})
    config_file.write_text(to_toml(data))


@pytest.mark.parametrize("method", ["kd", "hkt-kd", "fitnet-kd"])
def test_the_distilling_methods_take_temperature_and_weight_as_options(method):
    manager = manager_with(tiny_card())
    spec = resolve("tiny-pair", method, manager=manager, settings=["method.temperature=2", "method.weight=0.9"])
    assert (spec.method_options["temperature"], spec.method_options["weight"]) == (2, 0.9)
    recorded = tomllib.loads(to_toml(spec.config()))   # config.toml as the run writes it
    assert "kd_temperature" not in recorded["train"] and "kd_weight" not in recorded["train"]
    with pytest.raises(ConfigError, match="weight"):
        hkt_core.train("tiny-pair", method, manager=manager, epochs=1, method_options={"weight": 1.5})


def test_old_and_new_spelling_train_the_same_run(tmp_path, monkeypatch):
    manager = manager_with(tiny_card())
    new = hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "new", epochs=1,
                         settings=["method.temperature=2", "method.weight=0.9"])
    # the notice is said once per process: forget an earlier test's saying of it
    monkeypatch.setattr(config_module, "_moved_said", set())
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        old = hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "old", epochs=1,
                             settings=["train.kd_temperature=2", "train.kd_weight=0.9"])
    keyword = hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "kw", epochs=1,
                             kd_temperature=2.0, kd_weight=0.9)
    assert _losses(tmp_path / "old") == _losses(tmp_path / "new") == _losses(tmp_path / "kw")
    hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "default", epochs=1)
    assert _losses(tmp_path / "new") != _losses(tmp_path / "default")   # the options do reach the loss
    for run in (old, keyword):
        assert run.config["method_options"] == new.config["method_options"]
        assert run.config["train"] == new.config["train"]
    assert differences(old.config, new.config) == {}
    assert any("train.kd_weight is deprecated" in str(w.message) for w in said)


def test_a_card_pinning_the_old_spelling_sets_the_method_option_and_no_other_method_minds():
    card = tiny_card()
    pinned = attrs.evolve(card, train=attrs.evolve(card.train, kd_weight=0.9))
    manager = manager_with(pinned)
    assert resolve("tiny-pair", "kd", manager=manager).method_options["weight"] == 0.9
    assert resolve("tiny-pair", "kd", manager=manager, settings=["method.weight=0.7"]).method_options["weight"] == 0.7
    assert resolve("tiny-pair", "kd", manager=manager, kd_weight=0.6).method_options["weight"] == 0.6
    baseline = resolve("tiny-pair", "baseline", manager=manager, settings=["train.kd_temperature=3"])
    assert "weight" not in baseline.method_options and baseline.train.kd_weight is None


def test_the_train_record_no_longer_holds_kd_settings():
    assert (TrainConfig().kd_temperature, TrainConfig().kd_weight) == (None, None)


def test_an_old_run_folder_resumes_in_either_spelling(tmp_path):
    manager = manager_with(tiny_card())
    folder = tmp_path / "r"
    # an interrupted run of 2 epochs: one epoch trained, the checkpoint kept
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-pair", "kd", manager=manager, out=folder, epochs=2,
                       settings=["method.temperature=2"], callbacks=[stop_after(1)])
    _as_written_before(folder / "config.toml")
    assert tomllib.loads((folder / "config.toml").read_text())["train"]["kd_temperature"] == 2
    for settings in (["train.kd_temperature=2"], ["method.temperature=2"]):
        spec = resolve("tiny-pair", "kd", manager=manager, out=folder, epochs=2, resume=True, settings=settings)
        stored = tomllib.loads((folder / "config.toml").read_text())
        assert differences(stored, spec.config()) == {}
    run = hkt_core.train("tiny-pair", "kd", manager=manager, out=folder, epochs=2, resume=True,
                         settings=["train.kd_temperature=2"])
    assert run.summary and len(_losses(folder)) == 2   # the folder keeps its old layout, read anew
    assert differences(run.config, spec.config()) == {}
    assert not [r for r in read_history(folder) if r.get("event") == "resume" and r.get("changes")]
    # another temperature is another run, refused on resume in either spelling
    stored = tomllib.loads((folder / "config.toml").read_text())
    assert set(differences(stored, resolve("tiny-pair", "kd", manager=manager, out=folder, epochs=2,
                                           settings=["train.kd_temperature=3"]).config())) == {
        "method_options.temperature"}


def test_an_old_run_written_with_kd_weight_09_resumes_with_what_it_recorded(tmp_path):
    """train.kd_weight's default changed from 0.9 to 0.5 (config.CHANGED_DEFAULTS) before it moved."""
    manager = manager_with(tiny_card())
    folder = tmp_path / "r"
    hkt_core.train("tiny-pair", "kd", manager=manager, out=folder, epochs=1, settings=["method.weight=0.9"])
    _as_written_before(folder / "config.toml")
    spec = resolve("tiny-pair", "kd", manager=manager, out=folder, epochs=1, resume=True)
    assert spec.method_options["weight"] == 0.9 and spec.train.kd_weight is None


def test_reuse_treats_an_old_folder_and_the_new_spelling_as_the_same_run(tmp_path):
    manager = manager_with(tiny_card())
    for method in ("kd", "baseline"):
        folder = tmp_path / method
        hkt_core.train("tiny-pair", method, manager=manager, out=folder, epochs=1, seed=3)
        _as_written_before(folder / "config.toml")
        for options in ({}, {"settings": ["train.kd_weight=0.5"]}, {"kd_temperature": 4.0}):
            _, reused = train_or_reuse("tiny-pair", method, folder, say=lambda m: None, manager=manager,
                                       epochs=1, seed=3, **options)
            assert reused
    with pytest.raises(ConfigError, match="method_options.temperature"):
        train_or_reuse("tiny-pair", "kd", tmp_path / "kd", say=lambda m: None, manager=manager, epochs=1, seed=3,
                       settings=["method.temperature=2"])
