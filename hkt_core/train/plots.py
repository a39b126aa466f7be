"""Loss and metric curves as PNG (matplotlib is optional: without it, no picture and no error)."""

from __future__ import annotations

import logging
from pathlib import Path

from . import run as files


def _pyplot():
    try:
        import matplotlib

        logging.getLogger("matplotlib").setLevel(max(logging.WARNING, logging.getLogger("matplotlib").level))

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_curves(run_dir: Path, primary: str) -> Path | None:
    """``curves.png``: training and validation loss, and the validation primary metric, per epoch."""
    plt = _pyplot()
    records = files.read_metrics(run_dir)
    if plt is None or not records:
        return None
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        ax_loss.plot(epochs, [r.get(key, float("nan")) for r in records], marker="o", label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_metric.plot(epochs, [r.get(f"val_{primary}", float("nan")) for r in records], marker="o", color="C2")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(f"validation {primary}")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    target = run_dir / files.CURVES
    from ..io import atomic_write

    atomic_write(target, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)
    return target


def plot_comparison(path: Path, rows: list[dict], metric: str) -> Path | None:
    """A bar chart of mean +- std of ``metric`` per method (rows from :mod:`hkt_core.train.compare`)."""
    plt = _pyplot()
    if plt is None or not rows:
        return None
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(rows), 3.4))
    names = [r["method"] for r in rows]
    ax.bar(names, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], capsize=4,
           color=[f"C{i}" for i in range(len(rows))])
    ax.set_ylabel(f"test {metric}")
    lo = min(r["mean"] - r["std"] for r in rows)
    hi = max(r["mean"] + r["std"] for r in rows)
    pad = max(1e-3, 0.5 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), hi + pad)
    fig.tight_layout()
    from ..io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)
    return path
