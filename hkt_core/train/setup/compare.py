"""Several methods over several seeds on one pair: a table of mean +- std, a markdown file, a chart.

Each (method, seed) is an ordinary run folder ``<out>/<method>-seed<seed>``; a finished one is
reused and an interrupted one is resumed when its settings are the same (the rule of
:mod:`hkt_core.train.reuse`), so a comparison can be stopped and started again.

Runs train in ``workers`` processes at once (``hkt compare --workers``, ``hkt demo --workers``),
each with the run's own intra-op thread count (``train.threads``, 1 by default): the numbers do
not depend on how many workers there are or which command ran them. The parent, when a method
needs one, is trained (or found in the cache) once before the workers start.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import ConfigError, HKTError
from ...io import atomic_write_text
from .api import resolve
from .reuse import train_or_reuse


def default_workers(runs: int) -> int:
    """One worker per CPU core this process may use, at most one per run."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, runs))


def _job(pair: str, method: str, seed: int, out: str, overrides: dict[str, Any], manager=None) -> dict[str, Any]:
    """One (method, seed) run, trained or reused; its summary, whether it was reused and its messages.
    The per-epoch lines stay in the run folder's metrics.jsonl."""
    messages: list[str] = []
    quiet = logging.getLogger("hkt.train")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        run, reused = train_or_reuse(pair if manager is None else manager.lookup("pairs", pair), method,
                                     Path(out), label=f"{method} (seed {seed})", say=messages.append,
                                     seed=seed, progress=False, manager=manager, **overrides)
    finally:
        quiet.setLevel(level)
    return {"summary": run.summary, "reused": reused, "messages": messages,
            "seconds": time.perf_counter() - started}


def _check_folder(card, method: str, folder: Path, seed: int, manager, overrides: dict[str, Any]) -> None:
    from ...config import read_toml
    from ..folders import files
    from .reuse import config_differences

    if not ((folder / files.SUMMARY).is_file() or (folder / files.STATE).is_file()):
        return
    spec = resolve(card, method, manager=manager, out=folder, seed=seed, **overrides)
    diffs = config_differences(read_toml(folder / files.CONFIG), spec.config())
    if diffs:
        raise ConfigError(f"{folder} holds a run of {method} (seed {seed}) trained with other settings "
                          f"({'; '.join(diffs)}); it is kept as it is: choose another output folder, or remove "
                          f"that one to train anew")


def _runs_bar(total: int, progress: bool | None):
    """One progress bar over the comparison's runs on a terminal (``progress`` None), else none."""
    import sys

    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="runs", unit="run", file=sys.stderr, dynamic_ncols=True, leave=False)


def _close(bar) -> None:
    if bar is not None:
        bar.close()


def run_comparison(pair: str, methods: Sequence[str], seeds: Sequence[int], out: Path, *, manager=None,
                   say=print, workers: int | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Train (or reuse) every method and seed, ``workers`` runs at once (default
    :func:`default_workers`); returns one row per method. A ``manager`` other than the default one
    cannot travel to worker processes: its runs train one after the other in this process."""
    from ...plugins.host import resolve_manager

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers {workers!r} is invalid: an integer >= 1 (runs trained at once)")
    own_manager = manager is not None
    manager = resolve_manager(manager)
    card = manager.lookup("pairs", pair)
    specs = {m: resolve(card, m, manager=manager, out=out / f"{m}-seed{seeds[0]}", **overrides)
             for m in methods}  # fail before training anything
    jobs = [(method, seed) for method in methods for seed in seeds]
    for method, seed in jobs:  # a folder holding another run stops the comparison before anything trains
        _check_folder(card, method, out / f"{method}-seed{seed}", seed, manager, overrides)
    workers = 1 if own_manager else (workers or default_workers(len(jobs)))
    needs_parent = [m for m in methods if specs[m].method_cls.needs_parent]
    if needs_parent and not overrides.get("parent_weights"):
        from .training import Trainer

        first = specs[needs_parent[0]]
        first.progress = overrides.get("progress")
        quiet = logging.getLogger("hkt.train")
        level = quiet.level
        quiet.setLevel(logging.WARNING)   # its epochs are in the parent's metrics.jsonl
        try:
            Trainer(first).ensure_parent()   # once, before the workers share it
        finally:
            quiet.setLevel(level)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    options = {k: v for k, v in overrides.items() if k != "progress"}

    bar = _runs_bar(len(jobs), overrides.get("progress"))

    def done(key: tuple[str, int], result: dict[str, Any]) -> None:
        results[key] = result
        if bar is not None:
            bar.update(1)
        for message in result["messages"]:
            say(message)
        s = result["summary"]
        metric = s["primary_metric"]
        scale, unit = (100.0, "%") if metric in PERCENT else (1.0, "")
        how = "reused" if result["reused"] else f"trained in {result['seconds']:.0f}s"
        say(f"[{len(results)}/{len(jobs)}] {key[0]} seed {key[1]}: test {metric} {scale * s['test'][metric]:.2f}"
            f"{unit} ({how})")

    say(f"{len(jobs)} runs ({', '.join(methods)} x seeds {', '.join(map(str, seeds))}) into {out}, "
        f"{workers} at a time; each run's epochs are in its folder's metrics.jsonl")
    if workers <= 1:
        for method, seed in jobs:
            done((method, seed), _job(pair, method, seed, str(out / f"{method}-seed{seed}"), options,
                                      manager if own_manager else None))
        _close(bar)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from multiprocessing import get_context

        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        try:
            futures = {pool.submit(_job, pair, method, seed, str(out / f"{method}-seed{seed}"), options): (method, seed)
                       for method, seed in jobs}
            for future in as_completed(futures):
                done(futures[future], future.result())
        except BaseException:  # a failed run (or Ctrl-C) stops the comparison: nothing more starts
            pool.shutdown(wait=True, cancel_futures=True)
            _close(bar)
            raise
        pool.shutdown()
        _close(bar)
    return [_row(method, [results[(method, seed)]["summary"] for seed in seeds]) for method in methods]


def _row(method: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    metric = summaries[0]["primary_metric"]
    values = [s["test"][metric] for s in summaries]
    latencies = [s["latency_ms_per_sample"] for s in summaries]
    return {"method": method, "metric": metric, "higher_is_better": summaries[0]["higher_is_better"],
            "values": values, "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "parameters": summaries[0]["parameters"], "latency_ms_per_sample": statistics.fmean(latencies),
            "seeds": [s["seed"] for s in summaries]}


#: metrics shown in percent, in the table and the chart alike
PERCENT = ("accuracy", "error", "dice", "iou", "dice_all", "iou_all")


def format_table(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """One line per method: test metric mean +- std over seeds, parameters, ms per sample."""
    if not rows:
        return ""
    metric = rows[0]["metric"]
    scale, unit = (100.0, " (%)") if metric in PERCENT else (1.0, "")
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


def paired_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each method's paired difference to the baseline (test, same seeds; two-sided paired t-test)
    and whether it is beyond the seed-to-seed noise; nothing without a baseline or with fewer than
    two shared seeds."""
    from ...stats import paired

    by_method = {r["method"]: dict(zip(r["seeds"], r["values"])) for r in rows if r["method"] != "parent"}
    base = by_method.get("baseline")
    others = {m: v for m, v in by_method.items() if m != "baseline" and base and len(set(v) & set(base)) >= 2}
    if not others:
        return []
    scale, unit = (100.0, " points") if rows[0]["metric"] in PERCENT else (1.0, "")
    lines = ["paired difference to the baseline (test, same seeds; two-sided paired t-test):"]
    for method, values in others.items():
        c = paired(values, base)
        verdict = "beyond the noise (p < 0.05)" if c["p"] < 0.05 else "within the noise (p >= 0.05)"
        lines.append(f"  {method} - baseline: {scale * c['mean']:+.2f}{unit}, ahead on {c['wins']} of {c['n']} "
                     f"seeds, p = {c['p']:.3f}: {verdict}")
    return lines


def parent_row(out: Path, pair: str, rows: list[dict[str, Any]], *, manager=None) -> dict[str, Any] | None:
    """The parent the children of ``rows`` learned from, as a row of the table (the reference): a
    cached parent's test numbers from its own run folder, a pretrained one (the card's own weights,
    never trained by hkt) evaluated once on the pair's test split. None when no child had a parent,
    or the parent came from a file of the user's (``--parent-weights``)."""
    from ...config import read_toml
    from ..folders import files

    for row in rows:
        folder = out / f"{row['method']}-seed{row['seeds'][0]}"
        try:
            recorded = read_toml(folder / files.CONFIG).get("parent", {})
        except HKTError:
            continue
        source, path = recorded.get("source"), recorded.get("path")
        if source == "cache" and path and (Path(path) / files.SUMMARY).is_file():
            return _row("parent", [json.loads((Path(path) / files.SUMMARY).read_text(encoding="utf-8"))])
        if source == "pretrained":
            summary = _pretrained_summary(pair, recorded, manager)
            return _row("parent", [summary]) if summary is not None else None
    return None


def _pretrained_summary(pair: str, recorded: dict[str, Any], manager) -> dict[str, Any] | None:
    """A pretrained parent's test numbers, parameters and latency, as a run's summary holds them;
    None when its weights are no longer those the children were trained with."""
    import torch

    from ...models import count_parameters
    from ...plugins.host import resolve_manager
    from ..loop.evaluation import evaluate, measure_latency
    from ..folders.parents import pretrained_parent
    from .resolved import resolve_pair

    manager = resolve_manager(manager)
    resolved = resolve_pair(pair, manager)
    card, device = resolved.card, torch.device("cpu")
    with resolved.scope():
        found = pretrained_parent(card, manager, model=resolved.parent)
    if found is None or found[1].sha256 != recorded.get("sha256"):
        return None
    parent = found[0].eval()
    task = manager.lookup("tasks", card.task)
    threads = torch.get_num_threads()
    torch.set_num_threads(card.train.threads)   # the runs' own count
    try:
        test = evaluate(parent, resolved.splits().test, task, batch_size=card.train.batch_size, device=device,
                        manager=manager)
        latency = measure_latency(parent, card.input_shapes, device=device, manager=manager,
                                  dtypes=card.input_dtypes)
    finally:
        torch.set_num_threads(threads)
    return {"primary_metric": task.primary_metric, "higher_is_better": task.higher_is_better, "test": test,
            "parameters": count_parameters(parent), "latency_ms_per_sample": latency, "seed": 0}


def write_comparison(out: Path, pair: str, rows: list[dict[str, Any]], *, manager=None) -> dict[str, Path]:
    """``compare.md``, ``compare.json`` and (with matplotlib) ``compare.png`` in ``out``. The parent
    the children learned from is the table's first row (:func:`parent_row`; kept under ``parent`` in
    compare.json, whose ``rows`` are the compared methods), unless ``rows`` already hold it."""
    from ..folders.plots import plot_comparison

    out.mkdir(parents=True, exist_ok=True)
    tests = paired_lines(rows)
    parent = None if any(r["method"] == "parent" for r in rows) else parent_row(out, pair, rows, manager=manager)
    table = [parent, *rows] if parent is not None else rows
    text = f"# {pair}\n\n" + format_table(table, markdown=True)
    if tests:
        text += "\n" + tests[0] + "\n\n" + "".join(f"- {line.strip()}\n" for line in tests[1:])
    record = {"pair": pair, "rows": rows, **({"parent": parent} if parent is not None else {})}
    written = {"markdown": atomic_write_text(out / "compare.md", text),
               "json": atomic_write_text(out / "compare.json", json.dumps(record, indent=1))}
    chart = plot_comparison(out / "compare.png", table, rows[0]["metric"], pair=pair) if rows else None
    if chart is not None:
        written["chart"] = chart
    return written
