"""Pictures that do not mislead: curves of one quantity per axis, titled with pair, method and
seed; the comparison chart titled with pair and seeds, in the table's unit, its axis from zero."""

from __future__ import annotations

import json

import pytest

from hkt_core.train import plots


def _figures(monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    kept = []
    monkeypatch.setattr(plt, "close", lambda fig: kept.append(fig))
    return kept


def _run_folder(tmp_path, method, records):
    folder = tmp_path / f"{method}-seed3"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "summary.json").write_text(json.dumps({"pair": "digits-demo", "method": method, "seed": 3}))
    return folder


def test_curves_draw_one_quantity_per_axis_titled_with_pair_method_and_seed(tmp_path, monkeypatch):
    kept = _figures(monkeypatch)
    records = [{"epoch": e, "train_loss": 2.0 / e, "train_l2": 1.0 / e, "val_loss": 1.1 / e, "val_accuracy": 0.5 + e / 10}
               for e in (1, 2)]
    assert plots.plot_curves(_run_folder(tmp_path, "hkt", records), "accuracy").is_file()
    fig = kept[-1]
    task, objective, metric = fig.axes
    assert fig._suptitle.get_text() == "digits-demo: hkt, seed 3"
    assert task.get_ylabel() == "task loss" and [line.get_label() for line in task.lines] == ["training", "validation"]
    assert list(task.lines[0].get_ydata()) == [1.0, 0.5]          # HKT's native-output task loss, not its objective
    assert objective.get_ylabel() == "hkt objective" and list(objective.lines[0].get_ydata()) == [2.0, 1.0]
    assert metric.get_ylabel() == "validation accuracy (%)"
    assert list(metric.lines[0].get_ydata()) == pytest.approx([60.0, 70.0])


def test_a_method_that_logs_no_training_task_loss_shows_validation_alone():
    records = [{"epoch": 1, "train_loss": 3.0, "val_loss": 1.0}]
    assert plots.train_task_loss(records, "kd") is None               # KD's objective is not the task loss
    assert plots.train_task_loss(records, "baseline") == [3.0]        # the baseline's objective is


def test_the_comparison_axis_starts_at_zero_in_percent_with_std_bars():
    rows = [{"method": "baseline", "mean": 0.9, "std": 0.01, "seeds": [0, 1, 2]},
            {"method": "hkt", "mean": 0.92, "std": 0.02, "seeds": [0, 1, 2]}]
    axis = plots.comparison_axis(rows, "accuracy")
    assert axis["means"] == pytest.approx([90.0, 92.0]) and axis["stds"] == pytest.approx([1.0, 2.0])
    assert axis["ylim"][0] == 0.0 and axis["ylim"][1] > 94.0
    assert axis["ylabel"] == "test accuracy (%)" and "std over seeds" in axis["note"] and axis["seeds"] == [0, 1, 2]
    loss = plots.comparison_axis([{"method": "a", "mean": 0.3, "std": 0.1, "seeds": [0]}], "epe")
    assert loss["ylabel"] == "test epe" and loss["means"] == [0.3]


def test_the_comparison_chart_is_titled_with_pair_and_seeds(tmp_path, monkeypatch):
    kept = _figures(monkeypatch)
    rows = [{"method": "baseline", "mean": 0.9, "std": 0.01, "seeds": [0, 1, 2]}]
    assert plots.plot_comparison(tmp_path / "c.png", rows, "accuracy", pair="digits-demo").is_file()
    ax = kept[-1].axes[0]
    assert ax.get_title().startswith("digits-demo: test accuracy, seeds 0, 1, 2") and "std over seeds" in ax.get_title()
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylabel() == "test accuracy (%)"
