"""``hkt vision``: classification tools. ``hkt vision confusion RUN_DIR`` draws a run's confusion matrix.

The trained child of a run folder (``hkt train ...``) is evaluated on its data set's test split;
the matrix is written as a PNG and its per-class recall printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .plots import confusion_matrix, confusion_matrix_png


def predict_classes(model: nn.Module, dataset: Dataset, manager, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max predictions and targets of ``model`` (eval mode, no gradients) over ``dataset``
    (``manager``: the plugin manager the model's adapter is registered in)."""
    from hkt_core import adapter_for

    adapter = adapter_for(model, manager)
    model.eval()
    predictions, targets = [], []
    with torch.no_grad():
        for inputs, target in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            inputs = tuple(inputs) if isinstance(inputs, (list, tuple)) else (inputs,)
            scores = adapter.prediction(model(*inputs))
            predictions.append(scores.argmax(dim=1).cpu())
            targets.append(target.reshape(-1).cpu())
    return torch.cat(predictions), torch.cat(targets)


def run_confusion(run_dir: str | Path, out: str | Path | None = None, *, which: str = "best",
                  normalize: bool = True, batch_size: int = 256) -> tuple[Path, np.ndarray, list[str]]:
    """Confusion matrix of a run's child on the test split; returns (png path, counts, class names)."""
    import hkt_core
    from hkt_core import ConfigError, default_manager

    manager = default_manager()
    run = hkt_core.load_run(run_dir, manager)
    pair = run.resolved()   # the run's card, data set and models, under the run folder's trust rule
    card = pair.card
    bundle = pair.splits().bundle
    num_classes = bundle.info.get("num_classes")
    if not num_classes:
        raise ConfigError(f"data set {card.dataset!r} does not state info['num_classes']: not a classification set")
    names = list(bundle.info.get("class_names") or [str(i) for i in range(num_classes)])
    predictions, targets = predict_classes(run.child(which), bundle.test, manager, batch_size)
    matrix = confusion_matrix(predictions, targets, num_classes)
    out = Path(out) if out else Path(run_dir) / "confusion.png"
    confusion_matrix_png(matrix, out, names, normalize=normalize, title=f"{card.name} {run.method}")
    return out, matrix, names


def _confusion(args: argparse.Namespace) -> int:
    out, matrix, names = run_confusion(args.run_dir, args.out, which=args.which, normalize=not args.counts,
                                       batch_size=args.batch_size)
    recall = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    print(f"wrote {out}")
    print(f"test accuracy {accuracy:.4f} on {int(matrix.sum())} samples; recall per class:")
    print("  ".join(f"{name} {r:.3f}" for name, r in zip(names, recall)))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``hkt vision confusion``."""
    sub = parser.add_subparsers(dest="vision_command", metavar="SUBCOMMAND")
    confusion = sub.add_parser("confusion", help="confusion matrix (PNG) of a run's child on the test split")
    confusion.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `hkt train`")
    confusion.add_argument("--out", help="PNG to write (default RUN_DIR/confusion.png)")
    confusion.add_argument("--which", choices=("best", "last"), default="best",
                           help="the checkpoint: best on validation (default) or last epoch")
    confusion.add_argument("--counts", action="store_true", help="show counts instead of per-class fractions")
    confusion.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    confusion.set_defaults(handler=_confusion)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
