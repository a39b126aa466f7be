"""``train_or_reuse``: the one rule by which compare and the benchmarks reuse, resume or train a run."""

from __future__ import annotations

import json

import pytest

from hkt_core.errors import ConfigError
from hkt_core.train.reuse import config_differences, train_or_reuse
from test_train_support import manager_with, tiny_card


class Interrupt(Exception):
    """Stands for a kill right after the first epoch's checkpoint was committed."""


def _stop_after_first_epoch(done: int, record: dict) -> None:
    if done == 1:
        raise Interrupt


@pytest.fixture
def manager():
    return manager_with(tiny_card())


def _said():
    lines: list[str] = []
    return lines, lines.append


def test_identical_settings_reuse_the_finished_run(manager, tmp_path):
    lines, say = _said()
    run, reused = train_or_reuse("tiny-pair", "baseline", tmp_path / "r", manager=manager, say=say,
                                 epochs=1, seed=3)
    assert not reused and lines == [f"training baseline into {tmp_path / 'r'}"]
    summary = (run.path / "summary.json").read_text()
    again, reused = train_or_reuse("tiny-pair", "baseline", tmp_path / "r", manager=manager, say=say,
                                   epochs=1, seed=3)
    assert reused and lines[-1] == f"reusing {tmp_path / 'r'}"
    assert again.summary == json.loads(summary) and (run.path / "summary.json").read_text() == summary


@pytest.mark.parametrize("changed, difference", [
    ({"epochs": 2}, "train.epochs: run has 1, now 2"),
    ({"lr": 0.01}, "train.lr: run has 0.05, now 0.01"),
    ({"hkt": {"lam": 0.25}}, "hkt.lam: run has 0.6, now 0.25"),
])
def test_other_settings_are_refused_and_the_run_is_kept(manager, tmp_path, changed, difference):
    train_or_reuse("tiny-pair", "baseline", tmp_path / "r", manager=manager, say=lambda m: None, epochs=1, seed=3)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    options = {"epochs": 1, "seed": 3, **changed}
    with pytest.raises(ConfigError, match="trained with other settings") as err:
        train_or_reuse("tiny-pair", "baseline", tmp_path / "r", manager=manager, say=lambda m: None, **options)
    assert difference in str(err.value) and "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == before


def test_an_interrupted_run_is_resumed_and_a_changed_one_refused(manager, tmp_path):
    folder = tmp_path / "r"
    with pytest.raises(Interrupt):
        train_or_reuse("tiny-pair", "baseline", folder, manager=manager, say=lambda m: None, epochs=2, seed=1,
                       callbacks=[_stop_after_first_epoch])
    assert (folder / "state.json").is_file() and not (folder / "summary.json").exists()
    with pytest.raises(ConfigError, match="train.seed: run has 1, now 2"):
        train_or_reuse("tiny-pair", "baseline", folder, manager=manager, say=lambda m: None, epochs=2, seed=2)
    lines, say = _said()
    run, reused = train_or_reuse("tiny-pair", "baseline", folder, manager=manager, say=say, epochs=2, seed=1)
    assert not reused and lines == [f"resuming baseline in {folder}"]
    assert [r["epoch"] for r in run.metrics] == [1, 2]


def test_a_run_that_committed_nothing_is_started_over(manager, tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "config.toml").write_text('pair = "another"\n')
    run, reused = train_or_reuse("tiny-pair", "baseline", folder, manager=manager, say=lambda m: None,
                                 epochs=1, seed=0)
    assert not reused and run.config["pair"] == "tiny-pair" and (folder / "summary.json").is_file()


def test_bad_options_fail_before_anything_trains(manager, tmp_path):
    with pytest.raises(ConfigError, match="unknown training option"):
        train_or_reuse("tiny-pair", "baseline", tmp_path / "r", manager=manager, epoch=1)
    with pytest.raises(TypeError, match="decides force itself"):
        train_or_reuse("tiny-pair", "baseline", tmp_path / "r", manager=manager, force=True)
    assert not (tmp_path / "r").exists()


def test_config_differences_normalise_what_toml_changes():
    stored = {"run": "abc", "world_size": 1, "train": {"lr": 1.0, "milestones": [1, 2]}, "hkt": {}}
    assert config_differences(stored, {"run": "xyz", "train": {"lr": 1, "milestones": (1, 2), "clip": None},
                                       "hkt": {}}) == []
    assert config_differences(stored, {"train": {"lr": 1, "milestones": [1]}, "hkt": {"lam": 0.5}}) == [
        "hkt.lam: run has None, now 0.5", "train.milestones: run has [1, 2], now [1]"]


def test_compare_reuses_only_runs_with_the_same_settings(manager, tmp_path):
    from hkt_core.train.compare import run_comparison

    lines, say = _said()
    first = run_comparison("tiny-pair", ["baseline"], [0], tmp_path, manager=manager, say=say, epochs=1)
    again = run_comparison("tiny-pair", ["baseline"], [0], tmp_path, manager=manager, say=say, epochs=1)
    assert again == first and lines[-2] == f"reusing {tmp_path / 'baseline-seed0'}"
    assert lines[-1].startswith("[1/1] baseline seed 0: test accuracy") and lines[-1].endswith("(reused)")
    with pytest.raises(ConfigError, match="train.epochs: run has 1, now 2"):
        run_comparison("tiny-pair", ["baseline"], [0], tmp_path, manager=manager, say=say, epochs=2)
    with pytest.raises(ConfigError, match="unknown training option"):  # checked before anything trains
        run_comparison("tiny-pair", ["baseline"], [0], tmp_path / "other", manager=manager, say=say, epoch=2)
    assert not (tmp_path / "other").exists()
