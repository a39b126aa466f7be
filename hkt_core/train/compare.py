"""Several methods over several seeds on one pair: a table of mean +- std, a markdown file, a chart.

Each (method, seed) is an ordinary run folder ``<out>/<method>-seed<seed>``; a finished one is
reused and an interrupted one is resumed when its settings are the same (the rule of
:mod:`hkt_core.train.reuse`), so a comparison can be stopped and started again.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from .api import resolve
from .reuse import train_or_reuse


def run_comparison(pair: str, methods: Sequence[str], seeds: Sequence[int], out: Path, *, manager=None,
                   say=print, **overrides: Any) -> list[dict[str, Any]]:
    """Train (or reuse) every method and seed; returns one row per method."""
    from ..plugins import default_manager

    manager = manager or default_manager()
    card = manager.lookup("pairs", pair)
    for m in methods:  # fail before training anything
        resolve(card, m, manager=manager, **overrides)
    rows = []
    for method in methods:
        runs = [train_or_reuse(card, method, out / f"{method}-seed{seed}", label=f"{method} (seed {seed})",
                               say=say, seed=seed, manager=manager, **overrides)[0] for seed in seeds]
        rows.append(_row(method, [r.summary for r in runs]))
    return rows


def _row(method: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    metric = summaries[0]["primary_metric"]
    values = [s["test"][metric] for s in summaries]
    latencies = [s["latency_ms_per_sample"] for s in summaries]
    return {"method": method, "metric": metric, "higher_is_better": summaries[0]["higher_is_better"],
            "values": values, "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "parameters": summaries[0]["parameters"], "latency_ms_per_sample": statistics.fmean(latencies),
            "seeds": [s["seed"] for s in summaries]}


def format_table(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """One line per method: test metric mean +- std over seeds, parameters, ms per sample."""
    if not rows:
        return ""
    metric = rows[0]["metric"]
    scale, unit = (100.0, " (%)") if metric in ("accuracy", "error", "dice", "iou", "dice_all", "iou_all") else (1.0, "")
    header = ["method", f"test {metric}{unit}", "seeds", "parameters", "ms/sample"]
    body = [[r["method"], (f"{scale * r['mean']:.2f} ± {scale * r['std']:.2f}" if len(r["values"]) > 1
                           else f"{scale * r['mean']:.2f}"), str(len(r["values"])),
             f"{r['parameters']:,}", f"{r['latency_ms_per_sample']:.4f}"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(row) for row in body)]) + "\n"


def write_comparison(out: Path, pair: str, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """``compare.md``, ``compare.json`` and (with matplotlib) ``compare.png`` in ``out``."""
    from .plots import plot_comparison

    out.mkdir(parents=True, exist_ok=True)
    written = {"markdown": atomic_write_text(out / "compare.md", f"# {pair}\n\n" + format_table(rows, markdown=True)),
               "json": atomic_write_text(out / "compare.json", json.dumps({"pair": pair, "rows": rows}, indent=1))}
    chart = plot_comparison(out / "compare.png", rows, rows[0]["metric"]) if rows else None
    if chart is not None:
        written["chart"] = chart
    return written
