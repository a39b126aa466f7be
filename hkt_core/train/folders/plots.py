"""Loss and metric curves as PNG (matplotlib is optional: without it, no picture and no error)."""

from __future__ import annotations

import logging
from pathlib import Path

from . import files


def _pyplot():
    try:
        import matplotlib

        logging.getLogger("matplotlib").setLevel(max(logging.WARNING, logging.getLogger("matplotlib").level))

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


#: methods whose training objective is the task loss itself
_OBJECTIVE_IS_TASK_LOSS = ("baseline", "parent")
#: metrics drawn in percent (as hkt compare's table shows them)
_PERCENT = ("accuracy", "error", "dice", "iou", "dice_all", "iou_all")


def _identity(run_dir: Path) -> tuple[str, str, str]:
    """Pair, method and seed of a run folder (from its summary, else its config), for titles."""
    import json

    summary = run_dir / files.SUMMARY
    if summary.is_file():
        s = json.loads(summary.read_text(encoding="utf-8"))
        return str(s.get("pair", "?")), str(s.get("method", "?")), str(s.get("seed", "?"))
    from ...config import read_toml

    config = read_toml(run_dir / files.CONFIG) if (run_dir / files.CONFIG).is_file() else {}
    return (str(config.get("pair", "?")), str(config.get("method", "?")),
            str(config.get("train", {}).get("seed", "?")))


def train_task_loss(records: list[dict], method: str) -> list[float] | None:
    """The training task loss per epoch: HKT's native-output loss (``train_l2``), or the objective
    of a method that trains on the task loss alone; None when the run does not log it (KD)."""
    if all("train_l2" in r for r in records):
        return [r["train_l2"] for r in records]
    if method in _OBJECTIVE_IS_TASK_LOSS:
        return [r.get("train_loss", float("nan")) for r in records]
    return None


def plot_curves(run_dir: Path, primary: str) -> Path | None:
    """``curves.png``, one quantity per axis: the task loss on the training and validation splits,
    the training objective (what the optimiser minimised: HKT's composite loss, KD's objective),
    and the validation primary metric, per epoch; titled with pair, method and seed."""
    plt = _pyplot()
    records = files.read_metrics(run_dir)
    if plt is None or not records:
        return None
    pair, method, seed = _identity(run_dir)
    epochs = [r["epoch"] for r in records]
    fig, (ax_task, ax_objective, ax_metric) = plt.subplots(1, 3, figsize=(12, 3.4))
    task_train = train_task_loss(records, method)
    if task_train is not None:
        ax_task.plot(epochs, task_train, marker="o", label="training")
    ax_task.plot(epochs, [r.get("val_loss", float("nan")) for r in records], marker="o", label="validation")
    ax_task.set_title("task loss" + ("" if task_train is not None else " (validation; not logged in training)"),
                      fontsize=9)
    ax_task.set_ylabel("task loss")
    ax_task.legend()
    ax_objective.plot(epochs, [r.get("train_loss", float("nan")) for r in records], marker="o", color="C3")
    ax_objective.set_title("training objective (what the optimiser minimised)", fontsize=9)
    ax_objective.set_ylabel(f"{method} objective")
    scale, unit = (100.0, " (%)") if primary in _PERCENT else (1.0, "")
    ax_metric.plot(epochs, [scale * r.get(f"val_{primary}", float("nan")) for r in records], marker="o", color="C2")
    ax_metric.set_title(f"validation {primary}", fontsize=9)
    ax_metric.set_ylabel(f"validation {primary}{unit}")
    for ax in (ax_task, ax_objective, ax_metric):
        ax.set_xlabel("epoch")
    fig.suptitle(f"{pair}: {method}, seed {seed}")
    fig.tight_layout()
    target = run_dir / files.CURVES
    from ...io import atomic_write

    atomic_write(target, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)
    return target


def comparison_axis(rows: list[dict], metric: str) -> dict:
    """What the comparison chart draws: the unit scale (percent as the table), bar heights and
    error bars (std over seeds), the y range (from zero) and the labels."""
    scale, unit = (100.0, " (%)") if metric in _PERCENT else (1.0, "")
    means = [scale * r["mean"] for r in rows]
    stds = [scale * r["std"] for r in rows]
    top = max(m + s for m, s in zip(means, stds))
    bottom = min(0.0, min(m - s for m, s in zip(means, stds)))
    seeds = sorted({s for r in rows for s in r.get("seeds", [])})
    return {"means": means, "stds": stds, "ylim": (bottom, top * 1.08 if top > 0 else 1.0),
            "ylabel": f"test {metric}{unit}",
            "note": "bars: mean over seeds; error bars: std over seeds",
            "seeds": seeds}


def plot_comparison(path: Path, rows: list[dict], metric: str, pair: str = "") -> Path | None:
    """A bar chart of mean +- std over seeds of ``metric`` per method (rows from
    :mod:`hkt_core.train.compare`), in the table's unit, the axis from zero, titled with the pair
    and the seeds."""
    plt = _pyplot()
    if plt is None or not rows:
        return None
    axis = comparison_axis(rows, metric)
    fig, ax = plt.subplots(figsize=(2.4 + 1.2 * len(rows), 3.8))
    names = [r["method"] for r in rows]
    bars = ax.bar(names, axis["means"], yerr=axis["stds"], capsize=4, color=[f"C{i}" for i in range(len(rows))])
    for bar, mean in zip(bars, axis["means"]):
        ax.annotate(f"{mean:.2f}", (bar.get_x() + bar.get_width() / 2, mean), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_ylabel(axis["ylabel"])
    ax.set_ylim(*axis["ylim"])
    seeds = ", ".join(map(str, axis["seeds"]))
    ax.set_title(f"{pair}{': ' if pair else ''}test {metric}, seeds {seeds}\n{axis['note']}", fontsize=9)
    fig.tight_layout()
    from ...io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)
    return path
