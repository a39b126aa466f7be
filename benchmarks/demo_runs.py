"""What the flow and segmentation benchmarks share: a demo pair's card with the run's data and
parent settings, one run folder per (variant, seed) trained or reused by the one rule of
:mod:`hkt_core.train.reuse`, mean +- std cells, and the results files.

Imported by ``benchmarks/flow.py`` and ``benchmarks/seg.py`` (run as scripts, so this folder is on
``sys.path``).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from hkt_core.io import atomic_write_text
from hkt_core.train.reuse import train_or_reuse


def demo_card(manager, pair: str, *, dataset_options: dict[str, Any], parent_epochs: int | None):
    """The card of ``pair`` with ``dataset_options`` laid over its own and, when given, the parent's epochs."""
    card = manager.lookup("pairs", pair)
    parent_train = dict(card.parent_train)
    if parent_epochs:
        parent_train["epochs"] = parent_epochs
    options = {**card.dataset_options, **{k: v for k, v in dataset_options.items() if v}}
    return attrs.evolve(card, dataset_options=options, parent_train=parent_train)


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
