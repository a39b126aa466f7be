"""`train.train_samples`: a run learns from a fixed subset of the training split (the same for
every method and seed), the validation and test splits stay as they are, and the parent of a pair
can learn from all of it."""

from __future__ import annotations

import attrs
import pytest

from hkt_core.config import TrainConfig
from hkt_core.errors import ConfigError
from hkt_core.plugins import default_manager
from hkt_core.train.data import load_splits
from hkt_core.train.identity import differences
from hkt_core.train.parents import parent_key


@pytest.fixture(scope="module")
def card():
    return default_manager().lookup("pairs", "digits-demo")


def _indices(subset):
    return list(subset.indices)


def test_a_subset_of_the_training_split_with_validation_and_test_unchanged(card):
    manager = default_manager()
    full = load_splits(card, TrainConfig(), manager)
    small = load_splits(card, TrainConfig(train_samples=200, seed=5), manager)
    assert len(small.train) == 200
    assert set(_indices(small.train)) < set(_indices(full.train))
    assert _indices(small.val) == _indices(full.val) and len(small.test) == len(full.test)
    # the same subset whatever the run's seed; a larger subset contains a smaller one
    again = load_splits(card, TrainConfig(train_samples=200, seed=11), manager)
    assert _indices(again.train) == _indices(small.train)
    larger = load_splits(card, TrainConfig(train_samples=400), manager)
    assert set(_indices(small.train)) < set(_indices(larger.train))


def test_more_samples_than_the_split_holds_is_one_line_naming_the_limit(card):
    manager = default_manager()
    available = len(load_splits(card, TrainConfig(), manager).train)
    with pytest.raises(ConfigError, match=f"train.train_samples = 100000 exceeds the {available} training samples") as err:
        load_splits(card, TrainConfig(train_samples=100_000), manager)
    assert "\n" not in str(err.value) and f"at most {available}" in str(err.value)
    with pytest.raises(ConfigError, match="TrainConfig.train_samples = -1 is invalid: must be an integer >= 0"):
        TrainConfig(train_samples=-1)


def test_too_many_samples_on_the_command_line_is_one_line_before_anything_is_written(tmp_path, capsys):
    from hkt_core.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "digits-demo", "--method", "baseline", "--set", "train.train_samples=100000",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.train_samples = 100000 exceeds" in err[0]
    assert "fix: set train.val_fraction or train.train_samples within the limit" in err[0]
    assert "input_shapes" not in err[0]
    assert not out.exists()


def test_runs_written_before_the_setting_are_the_same_run():
    """The run's [train] and the card's [train] stored with it both gained the setting."""
    stored = {"pair": "p", "train": {"lr": 0.1}, "card": {"name": "p", "train": {"lr": 0.1}}}
    now = {"pair": "p", "train": {"lr": 0.1, "train_samples": 0}, "card": {"name": "p", "train": {"lr": 0.1, "train_samples": 0}}}
    assert differences(stored, now) == {}
    now["train"]["train_samples"] = now["card"]["train"]["train_samples"] = 50
    assert differences(stored, now) == {"card.train.train_samples": (0, 50), "train.train_samples": (0, 50)}


def test_a_run_folder_written_before_the_setting_is_reused(tmp_path):
    """A finished run whose config.toml predates ``train_samples`` is the same run as today's."""
    from hkt_core.config import read_toml, to_toml
    from hkt_core.train.reuse import train_or_reuse

    out = tmp_path / "run"
    train_or_reuse("digits-demo", "baseline", out, say=lambda m: None, epochs=1, progress=False)
    config = read_toml(out / "config.toml")
    del config["train"]["train_samples"], config["card"]["train"]["train_samples"]
    (out / "config.toml").write_text(to_toml(config))
    _, reused = train_or_reuse("digits-demo", "baseline", out, say=lambda m: None, epochs=1, progress=False)
    assert reused


def test_the_parent_cache_key_changes_only_when_the_parent_learns_from_a_subset(card):
    manager, base = default_manager(), TrainConfig()
    assert parent_key(card, base, manager) == parent_key(card, attrs.evolve(base, train_samples=0), manager)
    assert parent_key(card, base, manager) != parent_key(card, attrs.evolve(base, train_samples=100), manager)


def test_a_run_trains_on_the_subset(tmp_path):
    """64 samples in batches of 32: two optimiser steps an epoch; the setting is in the run's config."""
    import hkt_core
    from hkt_core.config import read_toml

    run = hkt_core.train("digits-demo", "baseline", epochs=2, train_samples=64, batch_size=32,
                         out=tmp_path / "run", progress=False)
    assert [r["step"] for r in run.metrics] == [2, 4]
    assert read_toml(tmp_path / "run" / "config.toml")["train"]["train_samples"] == 64
