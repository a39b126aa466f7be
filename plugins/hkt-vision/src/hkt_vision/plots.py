"""Confusion matrices: counted from predictions, drawn as a PNG (matplotlib, optional)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: row = true class, column = predicted class.

    ``predictions`` are class indices ``(N,)`` or scores ``(N, num_classes)`` (arg-maxed).
    """
    predictions = torch.as_tensor(predictions)
    targets = torch.as_tensor(targets).reshape(-1).to(torch.int64)
    if predictions.dim() == 2:
        if predictions.shape[1] != num_classes:
            raise ValueError(f"scores have {predictions.shape[1]} columns for {num_classes} classes")
        predictions = predictions.argmax(dim=1)
    predictions = predictions.reshape(-1).to(torch.int64)
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
    for name, t in (("predictions", predictions), ("targets", targets)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"{name} hold classes outside 0..{num_classes - 1}")
    flat = targets.cpu() * num_classes + predictions.cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def confusion_matrix_png(matrix: np.ndarray, path: str | Path, class_names: Sequence[str] | None = None, *,
                         normalize: bool = True, title: str | None = None) -> Path:
    """Draw ``matrix`` (rows true, columns predicted) to ``path``; rows normalised to recall if asked.

    Written atomically; needs matplotlib (``pip install hkt-vision[plots]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("confusion_matrix_png needs matplotlib: pip install 'hkt-vision[plots]'") from None
    from hkt_core import atomic_write

    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {matrix.shape}")
    k = matrix.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}-class matrix")
    shown = matrix.astype(np.float64)
    if normalize:
        shown = shown / np.maximum(shown.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.45 * k + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    try:
        im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "count")
        ax.set_xticks(range(k), names, rotation=45, ha="right")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            top = shown.max() if shown.size else 0
            for i in range(k):
                for j in range(k):
                    text = f"{shown[i, j]:.2f}" if normalize else str(int(matrix[i, j]))
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="white" if shown[i, j] > 0.6 * top else "black")
        accuracy = np.trace(matrix) / max(matrix.sum(), 1)
        ax.set_title(f"{title + ': ' if title else ''}accuracy {accuracy:.2%} (n = {int(matrix.sum())})")
        fig.tight_layout()
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
