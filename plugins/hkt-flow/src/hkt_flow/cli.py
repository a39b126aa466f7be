"""``hkt flow``: pictures of a trained flow network.

``hkt flow show RUN_DIR`` loads the run's child (best checkpoint), predicts the first pairs of
the test split of the run's data set (or of ``--dataset``) and writes ``RUN_DIR/flow.png``: one
row per pair, ``[frame 1 | ground truth | prediction | end-point error]``, with the EPE of each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hkt_core import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="flow_command", metavar="ACTION")
    show = sub.add_parser("show", help="colour-wheel pictures of a run's predictions next to the ground truth")
    show.add_argument("run_dir", help="a run folder written by `hkt train`")
    show.add_argument("--samples", type=int, default=4, help="number of test pairs (default 4)")
    show.add_argument("--dataset", default=None,
                      help="a registered flow data set instead of the run's (e.g. flow-motorcycle)")
    show.add_argument("--which", choices=("best", "last"), default="best", help="which checkpoint")
    show.add_argument("--out", default=None, help="output PNG (default RUN_DIR/flow.png)")
    show.add_argument("--scale", type=int, default=2, help="pixel zoom of the picture (default 2)")
    show.set_defaults(handler=run_show)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def run_show(args) -> int:
    out = show(args.run_dir, samples=args.samples, dataset=args.dataset, which=args.which,
               out=args.out, scale=args.scale)
    print(f"wrote {out}")
    return 0


def show(run_dir: str | Path, *, samples: int = 4, dataset: str | None = None, which: str = "best",
         out: str | Path | None = None, scale: int = 2) -> Path:
    """Write the comparison picture of a run (see module docstring); returns its path."""
    import hkt_core
    from hkt_core import default_manager

    from .adapter import RAFTAdapter
    from hkt_core.tasks.metrics import end_point_error

    from .target import split_target
    from .visualize import comparison_panel, save_panels

    if samples < 1:
        raise ConfigError(f"--samples {samples}: give at least 1")
    run = hkt_core.load_run(run_dir)
    model = run.child(which)
    card = run.card
    name = dataset or card.dataset
    if dataset:   # another registered data set, by name, with its defaults
        bundle = default_manager().lookup("datasets", name)()
    else:         # the run's own data set (module:callable included), under the run folder's trust rule
        bundle = run.resolved().splits().bundle
    test = bundle.test
    rows, titles = [], [f"{run.path.name}: {card.child} ({run.method}) on {name}; "
                        f"frame 1 | ground truth | prediction | EPE (0-5 px)"]
    adapter = RAFTAdapter()
    with torch.no_grad():
        for i in range(min(samples, len(test))):
            (image1, image2), target = test[i]
            pred = adapter.prediction(model(image1[None], image2[None]))
            batch = tuple(t[None] for t in target) if isinstance(target, (tuple, list)) else target[None]
            flow, valid = split_target(batch)
            epe = end_point_error(pred, flow)[0][0]  # the per-pixel errors of the one sample
            mean = float((epe * valid[0]).sum() / valid[0].sum().clamp_min(1))
            titles.append(f"pair {i}: EPE {mean:.3f} px")
            rows.append(comparison_panel(image1.permute(1, 2, 0).numpy(), flow[0].permute(1, 2, 0).numpy(),
                                         pred[0].permute(1, 2, 0).numpy(), valid[0].numpy().astype(bool)))
    target_path = Path(out) if out else run.path / "flow.png"
    return save_panels(target_path, rows, titles, scale=scale)


__all__ = ["configure", "show"]
