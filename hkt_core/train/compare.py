"""Several methods over several seeds on one pair: a table of mean +- std, a markdown file, a chart.

Each (method, seed) is an ordinary run folder ``<out>/<method>-seed<seed>``; a finished one is
reused and an interrupted one is resumed, so a comparison can be stopped and started again, but
only when its resolved configuration is identical (:mod:`hkt_core.train.identity`): a run trained
with other settings is refused, naming the differences, and kept as it is.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from .api import train
from .run import SUMMARY, STATE, Run


def run_comparison(pair: str, methods: Sequence[str], seeds: Sequence[int], out: Path, *, manager=None,
                   say=print, **overrides: Any) -> list[dict[str, Any]]:
    """Train (or reuse) every method and seed; returns one row per method."""
    from ..plugins import default_manager

    manager = manager or default_manager()
    for m in methods:  # fail before training anything
        manager.lookup("methods", m)
    card = manager.lookup("pairs", pair)
    rows = []
    for method in methods:
        runs = []
        for seed in seeds:
            folder = out / f"{method}-seed{seed}"
            _check_same_settings(folder, card, method, seed, manager, overrides)
            if (folder / SUMMARY).is_file():
                say(f"reusing {folder}")
                runs.append(Run(folder, manager))
                continue
            say(f"training {method} (seed {seed}) into {folder}")
            runs.append(train(card, method, seed=seed, out=folder, resume=(folder / STATE).is_file(),
                              force=not (folder / STATE).is_file(), manager=manager, **overrides))
        rows.append(_row(method, [r.summary for r in runs]))
    return rows


def _check_same_settings(folder: Path, card, method: str, seed: int, manager, overrides: dict[str, Any]) -> None:
    """A finished or interrupted run in ``folder`` is reused or resumed only under identical settings."""
    from ..config import read_toml
    from ..errors import ConfigError
    from .api import resolve
    from .identity import describe, differences
    from .run import CONFIG

    if not (folder / CONFIG).is_file() or not ((folder / SUMMARY).is_file() or (folder / STATE).is_file()):
        return
    wanted = resolve(card, method, seed=seed, out=folder, manager=manager, **overrides).config()
    diffs = differences(read_toml(folder / CONFIG), wanted)
    if diffs:
        raise ConfigError(f"{folder} holds a run of {method} (seed {seed}) trained with other settings "
                          f"({describe(diffs)}); it is kept as it is: choose another --out, or remove that folder "
                          f"to train anew")


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
    scale, unit = (100.0, " (%)") if metric in ("accuracy", "error", "dice", "iou") else (1.0, "")
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
