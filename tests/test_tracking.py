"""Experiment logging: ``--log tensorboard`` event files, the epoch-callback hook for other trackers,
and ``--channels-last``."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file

import hkt_core
from hkt_core.cli.main import main
from hkt_core.errors import ConfigError
from hkt_core.train.tracking import scalar_tags, trackers_for
from test_train_support import install_user_card, manager_with, tiny_card


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files in ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_scalar_tags_name_losses_metrics_and_timing():
    record = {"epoch": 2, "step": 40, "lr": 0.05, "train_loss": 1.0, "train_l1": 0.5, "train_l2": 0.9,
              "train_l3": 0.2, "val_accuracy": 0.8, "seconds": 3.0, "step_seconds": 0.01, "val_bad": float("nan")}
    assert scalar_tags(record) == {"lr": 0.05, "train/loss": 1.0, "train/L1": 0.5, "train/L2": 0.9, "train/L3": 0.2,
                                   "val/accuracy": 0.8, "seconds": 3.0, "step_seconds": 0.01}


def test_log_tensorboard_writes_event_files_into_the_run_folder(isolated_home, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    card = install_user_card(isolated_home)
    hkt_core.reset_default_manager()
    run = tmp_path / "run"
    assert main(["train", card.name, "--method", "hkt", "--epochs", "2", "--log", "tensorboard",
                 "--out", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"tensorboard: {run / 'tensorboard'} (tensorboard --logdir {run / 'tensorboard'})" in out
    assert "parent: " in out and "weights_sha256" in out   # the end of the run names every place it wrote
    scalars = read_scalars(run / "tensorboard")
    for tag in ("train/L1", "train/L2", "train/L3", "train/loss", "val/accuracy", "val/loss", "lr", "step_seconds"):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
    from hkt_core.train import load_run

    metrics = load_run(run).metrics
    assert [v for _, v in scalars["train/L2"]] == pytest.approx([r["train_l2"] for r in metrics])
    # --force starts over: the old events go with the old checkpoints
    assert main(["train", card.name, "--method", "baseline", "--epochs", "1", "--force", "--out", str(run)]) == 0
    assert not (run / "tensorboard").exists()


def test_missing_tensorboard_is_one_line_before_anything_is_written(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)   # import tensorboard -> ImportError
    with pytest.raises(ConfigError, match=r"^--log tensorboard needs the tensorboard package: pip install "
                                          r"'hkt\[tensorboard\]'$"):
        trackers_for(["tensorboard"], tmp_path / "run")
    card = tiny_card()
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        hkt_core.train(card, "baseline", manager=manager_with(card), out=tmp_path / "run", log=["tensorboard"])
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"--log 'wandb' is invalid: must be one of tensorboard"):
        trackers_for(["wandb"], tmp_path / "run")


def test_an_epoch_callback_is_the_hook_for_other_trackers(tmp_path):
    """What docs/training.md shows for trackers other than TensorBoard."""
    card = tiny_card()
    logged: list[tuple[int, dict]] = []

    class Tracker:
        closed = False

        def __call__(self, epoch, record):
            logged.append((epoch, scalar_tags(record)))

        def close(self):
            Tracker.closed = True

    hkt_core.train(card, "hkt", manager=manager_with(card), out=tmp_path / "run", epochs=2, callbacks=[Tracker()])
    assert [e for e, _ in logged] == [1, 2] and Tracker.closed
    assert {"train/L1", "train/L2", "train/L3", "val/accuracy", "lr", "step_seconds"} <= set(logged[0][1])


def test_channels_last_trains_image_models_and_refuses_others(tmp_path):
    card = tiny_card("tiny-bn", batchnorm=True)
    manager = manager_with(card)
    plain = hkt_core.train(card, "hkt", manager=manager, out=tmp_path / "A", epochs=1, seed=2)
    packed = hkt_core.train(card, "hkt", manager=manager, out=tmp_path / "B", epochs=1, seed=2, channels_last=True)
    a, b = load_file(plain.path / "last.safetensors"), load_file(packed.path / "last.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)  # same math, other storage order
    assert packed.summary["channels_last"] is True
    vector = type(card).from_dict({**card.to_dict(), "name": "tiny-vector", "input_shapes": [[1, 64]]})
    with pytest.raises(ConfigError, match=r"--channels-last is for 2-D image models .* pair 'tiny-vector' takes \[1, 64\]"):
        hkt_core.train(vector, "baseline", manager=manager_with(vector), out=tmp_path / "C", channels_last=True)
    assert not (tmp_path / "C").exists()
