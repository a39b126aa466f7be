"""What the flow and segmentation benchmarks share: a demo pair's card with the run's data and
parent settings and its 2HKT variant, one run folder per (variant, seed) trained or reused by the
one rule of :mod:`hkt_core.train.reuse`, metrics over a test set, mean +- std cells, and the
results files.

Imported by ``benchmarks/flow.py`` and ``benchmarks/seg.py`` (run as scripts, so this folder is on
``sys.path``).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from hkt_core.errors import HKTError
from hkt_core.io import atomic_write_text
from hkt_core.tasks.metrics import MetricAccumulator
from hkt_core.train.reuse import train_or_reuse


def demo_arguments(parser, out: str, reduced: str):
    """The options every demo-pair benchmark takes: ``--out``, ``--seeds``, ``--epochs``,
    ``--parent-epochs`` and ``--reduced`` (described by ``reduced``)."""
    parser.add_argument("--out", default=out, help="folder for the runs and the results")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="child seeds")
    parser.add_argument("--epochs", type=int, default=None, help="child epochs (default: the card's)")
    parser.add_argument("--parent-epochs", type=int, default=None, help="parent epochs (default: the card's)")
    parser.add_argument("--reduced", action="store_true", help=f"a reduced configuration for a busy machine: {reduced}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check in seconds: tiny data, one epoch, one seed, everything written under --out "
                             "(a temporary folder unless given); the figures mean nothing")
    return parser


def parse_demo_arguments(parser, argv: list[str] | None, *, seeds: list[int], reduced: dict[str, Any],
                         quick: dict[str, Any] | None = None):
    """Parsed options; with ``--reduced`` each option in ``reduced`` not given takes its reduced value,
    with ``--quick`` each option in ``quick`` takes its quick value and ``--out`` defaults to a
    temporary folder."""
    args = parser.parse_args(argv)
    for key, value in (reduced.items() if args.reduced else ()):
        setattr(args, key, getattr(args, key) or value)
    if args.quick:
        for key, value in (quick or {}).items():
            setattr(args, key, value)
        if args.out == parser.get_default("out"):
            import tempfile

            args.out = tempfile.mkdtemp(prefix="hkt-bench-quick-")
    args.seeds = args.seeds or seeds
    return args


def demo_card(manager, pair: str, *, dataset_options: dict[str, Any], parent_epochs: int | None):
    """The card of ``pair`` with ``dataset_options`` laid over its own and, when given, the parent's epochs."""
    card = manager.lookup("pairs", pair)
    parent_train = dict(card.parent_train)
    if parent_epochs:
        parent_train["epochs"] = parent_epochs
    options = {**card.dataset_options, **{k: v for k, v in dataset_options.items() if v}}
    return attrs.evolve(card, dataset_options=options, parent_train=parent_train)


def variant_card(card, stages: int, point: str):
    """The card itself, or for 2HKT the card with one mixing point ``point`` (the outputs are the
    second stage)."""
    if stages == card.stages:
        return card
    return attrs.evolve(card, name=f"{card.name}-2hkt", stages=2, alignment=((point, point),))


def metric_values(model: torch.nn.Module, loader, metrics, predict: Callable[..., Any]) -> dict[str, float]:
    """``metrics`` of ``model`` in eval mode over ``loader``'s ``(inputs, target)`` batches, with
    ``predict(model, inputs)`` giving the prediction; pixels pooled over the whole set."""
    acc = MetricAccumulator(metrics)
    model.eval()
    with torch.no_grad():
        for inputs, target in loader:
            acc.update(predict(model, inputs), target)
    return acc.values()


def runner(out: Path, manager) -> Callable[..., Any]:
    """``run(name, method, card, seed, **options) -> Run`` into ``out/<name>-seed<seed>``, reused when
    the folder holds that very run (see :func:`hkt_core.train.reuse.train_or_reuse`)."""
    def run(name: str, method: str, card, seed: int, **options):
        return train_or_reuse(card, method, out / f"{name}-seed{seed}", label=f"{name} (seed {seed})",
                              say=lambda m: print(m, flush=True), seed=seed, progress=False,
                              manager=manager, **options)[0]
    return run


def mean_std(values: list[float], digits: int = 3, scale: float = 1.0) -> str:
    """``mean +- std`` of ``scale * values`` (std 0 for a single value)."""
    scaled = [scale * v for v in values]
    std = statistics.stdev(scaled) if len(scaled) > 1 else 0.0
    return f"{statistics.fmean(scaled):.{digits}f} +- {std:.{digits}f}"


def write_results(out: Path, table: str, payload: dict[str, Any]) -> None:
    """Print ``table`` and write it as ``out/results.md``, with ``payload`` as ``out/results.json``."""
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", table + "\n")
    atomic_write_text(out / "results.json", json.dumps(payload, indent=1))


def main_exit_code(main: Callable[[], int]) -> int:
    """``main()``, with an hkt error (a bad option, a run folder trained with other settings) told
    in one line and exit code 2 instead of a traceback."""
    try:
        return main()
    except HKTError as exc:
        print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr)
        return 2
