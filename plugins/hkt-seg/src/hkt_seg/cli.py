"""``hkt seg``: segmentation tools. ``hkt seg show RUN_DIR`` draws a trained child's predictions.

The sheet shows, per test sample, the image, the ground truth and the prediction overlaid, and the
command prints the global Dice of the drawn samples per class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hkt_core.tasks.metrics import class_overlap, dice_per_class

from .pictures import comparison_sheet, save_png


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """Class-index predictions (N, H, W) of ``model`` in eval mode, without gradients."""
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            outputs.append(model(images[start:start + batch_size]).argmax(dim=1))
    return torch.cat(outputs).numpy()


def show_predictions(model: nn.Module, dataset, out: str | Path, *, count: int = 6, scale: int = 4,
                     ignore_index: int | None = 255, class_names: list[str] | None = None) -> dict[str, float]:
    """Write a comparison sheet of the first ``count`` samples; return their per-class Dice."""
    if count < 1:
        raise ValueError(f"count = {count!r} is invalid: an integer >= 1")
    n = min(count, len(dataset))
    samples = [dataset[i] for i in range(n)]
    images = torch.stack([s[0][0] if isinstance(s[0], (tuple, list)) else s[0] for s in samples])
    truths = torch.stack([s[1] for s in samples])
    preds = predict(model, images)
    save_png(comparison_sheet(images.numpy(), truths.numpy(), preds, scale=scale, ignore_index=ignore_index), out)
    model.eval()
    with torch.no_grad():
        logits = model(images)
    dice = dice_per_class(class_overlap(logits, truths, ignore_index)).tolist()
    names = class_names or [str(i) for i in range(len(dice))]
    return {f"dice_{names[i]}": d for i, d in enumerate(dice)}


def _show(args: argparse.Namespace) -> int:
    import hkt_core
    from hkt_core import ConfigError

    run = hkt_core.load_run(args.run_dir)
    card = run.card
    if card is None:
        raise ConfigError(f"{args.run_dir}: the run records no pair card, so its data set is unknown")
    pair = run.resolved()   # the run's data set (module:callable included), under the run folder's trust rule
    bundle = pair.splits().bundle
    task = pair.manager.lookup("tasks", card.task)
    ignore_index = getattr(task, "ignore_index", None)
    out = Path(args.out) if args.out else Path(args.run_dir) / "seg-predictions.png"
    dice = show_predictions(run.child(), bundle.test, out, count=args.count, scale=args.scale,
                            ignore_index=ignore_index, class_names=bundle.info.get("class_names"))
    print(f"wrote {out}")
    print("  ".join(f"{k} {v:.4f}" for k, v in dice.items()))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``hkt seg show``."""
    sub = parser.add_subparsers(dest="seg_command", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="prediction overlays of a run's child beside the ground truth")
    show.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `hkt train`")
    show.add_argument("--count", type=int, default=6, help="test samples to draw (default 6)")
    show.add_argument("--scale", type=int, default=4, help="pixel magnification (default 4)")
    show.add_argument("--out", help="PNG to write (default RUN_DIR/seg-predictions.png)")
    show.set_defaults(handler=_show)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
