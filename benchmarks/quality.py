"""Quality benchmark: does inheritance pay? Baseline vs KD vs HKT (vs InherNet) on offline data.

Pairs (cards in ``plugins/hkt-vision/src/hkt_vision/pairs/quality-*.toml``):

- ``quality-digits``: scikit-learn's 8x8 digits (1,797 images in total, so the test set is 360),
  CNN parent (70k parameters) -> tiny CNN child (438 parameters).
- ``quality-mnist1d``: MNIST-1D generated offline (10,000 signals: 4,500 train, 500 validation,
  5,000 test), 1-D CNN parent (0.14M) -> tiny 1-D CNN child (448 parameters).

Each pair's parent is trained once (seed 0) and every child loads those weights, so all methods
inherit from the same parent. Per seed: the baseline child, the KD child, HKT children with 2HKT
(the ``quality-<data>`` card) and 3HKT (the ``quality-<data>-3hkt`` card: one more mixing point)
for each mixture in ``ga gate add mse``, and the InherNet child (``inherit`` from hkt-inhernet)
where the parent can be compressed. Every child uses the card's epochs, optimiser, schedule and
(no) augmentation; KD and HKT use the hyper-parameters chosen on the validation split by
``--tune`` (the search and its results are in docs/RESULTS.md). Selection of the checkpoint is
on validation; the test set is evaluated once per run.

Each run is an ordinary run folder ``<out>/<pair>/<label>-seed<S>``, reused when finished, so a
stopped benchmark continues where it was. Jobs run in ``--workers`` processes, one intra-op
thread each (the networks are far too small to gain from threads).

    python benchmarks/quality.py                      # the full benchmark (10 seeds, about 25 min), writes docs/RESULTS.md
    python benchmarks/quality.py --quick              # smoke check: 1 seed, 2 epochs, small data
    python benchmarks/quality.py --tune               # the validation search for KD and HKT settings
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIXTURES = ("ga", "gate", "add", "mse")

# -- what is compared --------------------------------------------------------------------------

#: per data set: the 2HKT card, the 3HKT card, how InherNet is run (None: not applicable, why)
PAIRS: dict[str, dict[str, Any]] = {
    "digits": {
        "card": "quality-digits", "card3": "quality-digits-3hkt",
        # The child's budget (438) is below the smallest compression of this parent (rank 1 with the
        # first convolution and the classifier kept dense: 2,906 with 2 heads); the benchmark runs
        # the smallest InherNet reachable and labels its size.
        "inherit": {"rank": 1, "heads": 1},
        "inherit_note": "the child's budget (438) is unreachable: rank 1 everywhere still leaves 2,906 "
                        "parameters with 2 heads; run at rank 1 with 1 head",
    },
    "mnist1d": {
        "card": "quality-mnist1d", "card3": "quality-mnist1d-3hkt",
        "inherit": None,
        "inherit_note": "not applicable: hkt-inhernet compresses nn.Linear and nn.Conv2d; this parent is "
                        "made of Conv1d layers and its only Linear is the (dense) classifier",
    },
}

#: KD and HKT settings chosen on the validation split (see --tune and docs/RESULTS.md)
CHOSEN: dict[str, dict[str, Any]] = {
    "digits": {"kd": {"kd_temperature": 2.0, "kd_weight": 0.5},
               "hkt": {"lam": 0.6, "alphas": [0.2, 0.6, 0.2], "inherit_loss": "task", "directions": "both"}},
    "mnist1d": {"kd": {"kd_temperature": 2.0, "kd_weight": 0.9},
                "hkt": {"lam": 0.6, "alphas": [0.2, 0.6, 0.2], "inherit_loss": "task", "directions": "both"}},
}

#: the validation search: KD (temperature, weight) and HKT (2HKT, ga unless named) variations
KD_GRID = [(t, w) for t in (2.0, 4.0, 8.0) for w in (0.5, 0.9)]
HKT_GRID: list[tuple[str, dict[str, Any]]] = [
    ("default (mae)", {}),
    ("mae a=(.1,.8,.1)", {"alphas": [0.1, 0.8, 0.1]}),
    ("task", {"inherit_loss": "task"}),
    ("task a=(.2,.6,.2)", {"inherit_loss": "task", "alphas": [0.2, 0.6, 0.2]}),
    ("task a=(1/3 each)", {"inherit_loss": "task", "alphas": [1 / 3, 1 / 3, 1 / 3]}),
    ("task lam=.3", {"inherit_loss": "task", "lam": 0.3}),
    ("task lam=.8", {"inherit_loss": "task", "lam": 0.8}),
    ("task backbone a=(.3,.7,0)", {"inherit_loss": "task", "directions": "backbone", "alphas": [0.3, 0.7, 0.0]}),
    ("task head a=(0,.7,.3)", {"inherit_loss": "task", "directions": "head", "alphas": [0.0, 0.7, 0.3]}),
]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text).strip("_")


# -- jobs ----------------------------------------------------------------------------------------

def job(data: str, label: str, method: str, seed: int, *, card: str, overrides: dict[str, Any] | None = None,
        note: str = "") -> dict[str, Any]:
    return {"data": data, "label": label, "method": method, "seed": seed, "card": card,
            "overrides": overrides or {}, "note": note}


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


def resolve_card(name: str, quick: bool):
    """The registered card, shrunk in ``--quick`` mode (2 epochs, small MNIST-1D)."""
    import attrs
    from hkt_core.plugins import default_manager

    card = default_manager().lookup("pairs", name)
    if not quick:
        return card
    options = dict(card.dataset_options)
    if card.dataset == "mnist1d":
        options["num_samples"] = 1000
    return attrs.evolve(card, train=attrs.evolve(card.train, epochs=2), dataset_options=options,
                        parent_train={**card.parent_train, "epochs": 2})


def run_job(spec: dict[str, Any], out: str, quick: bool) -> dict[str, Any]:
    """Train (or reuse) one run; returns its summary fields, or the error."""
    from hkt_core.train.reuse import train_or_reuse

    folder = Path(out) / spec["data"] / f"{_slug(spec['label'])}-seed{spec['seed']}"
    started = time.time()
    try:
        kwargs = dict(spec["overrides"])
        if spec["method"] != "parent":
            kwargs["parent_weights"] = str(Path(out) / spec["data"] / "parent-seed0" / "child.safetensors")
        run, reused = train_or_reuse(resolve_card(spec["card"], quick), spec["method"], folder,
                                     say=lambda m: None, seed=spec["seed"], progress=False, **kwargs)
        s = run.summary
        return {**spec, "folder": str(folder), "val": s["val"]["accuracy"], "test": s["test"]["accuracy"],
                "test_n": None, "parameters": s["parameters"], "latency_ms": s["latency_ms_per_sample"],
                "train_seconds": s["train_seconds"], "epochs": s["epochs"], "best_epoch": s["best_epoch"],
                "wall": time.time() - started, "reused": reused}
    except Exception as exc:  # one failing run must not stop the benchmark; it is reported
        return {**spec, "folder": str(folder), "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(limit=3)}


def execute(jobs: list[dict[str, Any]], out: Path, quick: bool, workers: int, log) -> list[dict[str, Any]]:
    results = []
    if workers <= 1:
        _init_worker()
        for spec in jobs:
            results.append(run_job(spec, str(out), quick))
            log(_describe(results[-1], len(results), len(jobs)))
        return results
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = [pool.submit(run_job, spec, str(out), quick) for spec in jobs]
        for future in as_completed(futures):
            results.append(future.result())
            log(_describe(results[-1], len(results), len(jobs)))
    return results


def _describe(r: dict[str, Any], i: int, n: int) -> str:
    head = f"[{i}/{n}] {r['data']:8s} {r['label']:28s} seed {r['seed']}"
    if "error" in r:
        return f"{head}  FAILED {r['error']}"
    return (f"{head}  val {100 * r['val']:.2f}  test {100 * r['test']:.2f}  "
            f"{r['train_seconds']:.1f}s train, {r['wall']:.1f}s wall")


def parent_jobs(datas: list[str]) -> list[dict[str, Any]]:
    return [job(d, "parent", "parent", 0, card=PAIRS[d]["card"]) for d in datas]


def benchmark_jobs(datas: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """Seed-major, so a stopped benchmark keeps whole seeds."""
    jobs = []
    for seed in seeds:
        for d in datas:
            spec, chosen = PAIRS[d], CHOSEN[d]
            jobs.append(job(d, "baseline", "baseline", seed, card=spec["card"]))
            jobs.append(job(d, "KD", "kd", seed, card=spec["card"], overrides=dict(chosen["kd"])))
            for stages, card in ((2, spec["card"]), (3, spec["card3"])):
                for mixture in MIXTURES:
                    jobs.append(job(d, f"{stages}HKT {mixture}", "hkt", seed, card=card,
                                    overrides={"hkt": hkt_settings(chosen["hkt"], mixture)}))
            # the untuned defaults (mae, alphas 0.25/0.5/0.25, lam 0.6, ga): what tuning changed
            jobs.append(job(d, "2HKT ga, defaults", "hkt", seed, card=spec["card"], overrides={"hkt": {}}))
            if spec["inherit"] is not None:
                jobs.append(job(d, "InherNet", "inherit", seed, card=spec["card"],
                                overrides={"method_options": dict(spec["inherit"])}, note=spec["inherit_note"]))
    return jobs


def hkt_settings(chosen: dict[str, Any], mixture: str) -> dict[str, Any]:
    """The chosen HKT settings with ``mixture``; ``mse`` does not mix child->parent, so its L3 weight
    (which would multiply a constant) moves to the native loss."""
    settings = {**chosen, "mixture": mixture}
    if mixture == "mse":
        a1, a2, a3 = settings.get("alphas", (0.25, 0.5, 0.25))
        settings["alphas"] = [a1, a2 + a3, 0.0]
    return settings


def tune_jobs(datas: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    jobs = []
    for seed in seeds:
        for d in datas:
            card = PAIRS[d]["card"]
            jobs.append(job(d, "baseline", "baseline", seed, card=card))
            for t, w in KD_GRID:
                jobs.append(job(d, f"tune KD T={t:g} w={w:g}", "kd", seed, card=card,
                                overrides={"kd_temperature": t, "kd_weight": w}))
            for name, hkt in HKT_GRID:
                jobs.append(job(d, f"tune HKT {name}", "hkt", seed, card=card, overrides={"hkt": hkt}))
    return jobs


# -- statistics ----------------------------------------------------------------------------------

def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Paired comparison of a - b over the seeds both have: mean, std, t-test and sign-test p."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    m, sd = mean_std(diffs)
    out = {"n": len(diffs), "mean": m, "std": sd, "t_p": math.nan, "sign_p": math.nan,
           "wins": sum(d > 0 for d in diffs), "losses": sum(d < 0 for d in diffs)}
    if len(diffs) >= 2 and any(d != 0 for d in diffs):
        out["t_p"] = float(stats.ttest_1samp(diffs, 0.0).pvalue) if sd > 0 else 0.0
        nonzero = out["wins"] + out["losses"]
        out["sign_p"] = float(stats.binomtest(out["wins"], nonzero, 0.5).pvalue)
    return out


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per data set and label: test/val mean +- std, error reduction, paired tests, cost ratios."""
    table: dict[str, Any] = {}
    ok = [r for r in results if "error" not in r]
    for d in sorted({r["data"] for r in results}):
        rows = [r for r in ok if r["data"] == d]
        by_label: dict[str, dict[int, dict[str, Any]]] = {}
        for r in rows:
            by_label.setdefault(r["label"], {})[r["seed"]] = r
        base = by_label.get("baseline", {})
        kd = by_label.get("KD", {})
        base_test = {s: r["test"] for s, r in base.items()}
        kd_test = {s: r["test"] for s, r in kd.items()}
        base_epoch = {s: r["train_seconds"] / r["epochs"] for s, r in base.items()}
        entries = {}
        for label, runs in by_label.items():
            test = {s: r["test"] for s, r in runs.items()}
            val = {s: r["val"] for s, r in runs.items()}
            tm, ts = mean_std(list(test.values()))
            vm, vs = mean_std(list(val.values()))
            bm = mean_std(list(base_test.values()))[0] if base_test else math.nan
            ratios = [runs[s]["train_seconds"] / runs[s]["epochs"] / base_epoch[s] for s in runs if s in base_epoch]
            any_run = next(iter(runs.values()))
            entries[label] = {
                "seeds": sorted(runs), "test_mean": tm, "test_std": ts,
                "test_median": statistics.median(test.values()), "test_min": min(test.values()),
                "test_by_seed": {str(k): v for k, v in sorted(test.items())}, "val_mean": vm, "val_std": vs,
                "rel_error_reduction": (1 - (1 - tm) / (1 - bm)) if label != "parent" and bm < 1 else math.nan,
                "parameters": any_run["parameters"],
                "latency_ms": statistics.median(r["latency_ms"] for r in runs.values()),
                "epoch_time_ratio": statistics.median(ratios) if ratios and label != "parent" else math.nan,
                "vs_baseline": paired(test, base_test) if label not in ("baseline", "parent") else None,
                "vs_kd": paired(test, kd_test) if label not in ("baseline", "KD", "parent") else None,
                "note": any_run.get("note", ""),
            }
        table[d] = entries
    return table


# -- reporting -----------------------------------------------------------------------------------

def _pct(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def _p(x: float) -> str:
    return "-" if x is None or math.isnan(x) else (f"{x:.3f}" if x >= 0.001 else f"{x:.1e}")


def _diff(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    return f"{100 * c['mean']:+.2f} +- {100 * c['std']:.2f} ({c['wins']}/{c['n']}, p={_p(c['t_p'])})"


def order(labels) -> list[str]:
    fixed = (["parent", "baseline", "KD"] + [f"{k}HKT {m}" for k in (2, 3) for m in MIXTURES]
             + ["2HKT ga, defaults", "InherNet"])
    return [name for name in fixed if name in labels] + sorted(name for name in labels if name not in fixed)


def results_markdown(table: dict[str, Any]) -> str:
    lines = []
    for d, entries in table.items():
        lines += [f"### {d} ({PAIRS[d]['card']})", "",
                  "| method | test accuracy % | median (min) | val accuracy % | rel. error reduction vs baseline | "
                  "paired diff vs baseline (pts; wins/n, t-test p) | paired diff vs KD | parameters | "
                  "ms / sample | epoch time / baseline |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for label in order(entries):
            e = entries[label]
            seeds = f" (n={len(e['seeds'])})" if label == "parent" else ""
            rer = "-" if math.isnan(e["rel_error_reduction"]) else f"{100 * e['rel_error_reduction']:+.1f}%"
            ratio = "-" if math.isnan(e["epoch_time_ratio"]) else f"{e['epoch_time_ratio']:.2f}x"
            lines.append(f"| {label}{seeds} | {_pct(e['test_mean'])} +- {_pct(e['test_std'])} | "
                         f"{_pct(e['test_median'])} ({_pct(e['test_min'])}) | "
                         f"{_pct(e['val_mean'])} +- {_pct(e['val_std'])} | {rer} | {_diff(e['vs_baseline'])} | "
                         f"{_diff(e['vs_kd'])} | {e['parameters']:,} | {e['latency_ms']:.4f} | {ratio} |")
        notes = {e["note"] for e in entries.values() if e["note"]}
        lines += [""] + [f"InherNet: {n}." for n in sorted(notes)] + [""]
    return "\n".join(lines)


def tune_markdown(table: dict[str, Any]) -> str:
    lines = []
    for d, entries in table.items():
        lines += [f"### {d}: validation search", "",
                  "| setting | val accuracy % (mean +- std) | test % (not used for selection) |", "|---|---|---|"]
        for label in sorted(entries, key=lambda k: (not k.startswith("baseline"), "HKT" in k, -entries[k]["val_mean"])):
            e = entries[label]
            lines.append(f"| {label.replace('tune ', '')} | {_pct(e['val_mean'])} +- {_pct(e['val_std'])} | "
                         f"{_pct(e['test_mean'])} +- {_pct(e['test_std'])} |")
        lines.append("")
    return "\n".join(lines)


def plot(table: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(6.5 * len(table), 4.2), squeeze=False)
    for ax, (d, entries) in zip(axes[0], table.items()):
        labels = [name for name in order(entries) if name != "parent"]
        means = [100 * entries[name]["test_mean"] for name in labels]
        stds = [100 * entries[name]["test_std"] for name in labels]
        colours = ["0.55" if name == "baseline" else "tab:orange" if name == "KD" else "tab:purple" if name == "InherNet"
                   else "tab:cyan" if "defaults" in name
                   else "tab:blue" if name.startswith("2HKT") else "tab:green" for name in labels]
        ax.bar(range(len(labels)), means, yerr=stds, color=colours, capsize=3, alpha=0.85)
        for i, name in enumerate(labels):  # every seed's run, so outliers are visible
            values = [100 * v for v in entries[name]["test_by_seed"].values()]
            ax.plot([i] * len(values), values, "k.", ms=3, alpha=0.6)
        if "parent" in entries:
            ax.axhline(100 * entries["parent"]["test_mean"], color="k", ls="--", lw=1, label="parent")
        if "baseline" in entries:
            ax.axhline(100 * entries["baseline"]["test_mean"], color="0.55", ls=":", lw=1, label="baseline")
        lo = min(min(m - s, 100 * entries[name]["test_min"]) for m, s, name in zip(means, stds, labels))
        ax.set_ylim(max(0.0, lo - 3), 100)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        n = max(len(entries[name]["seeds"]) for name in labels)
        ax.set_title(f"{d}: test accuracy, mean +- std and each seed ({n} seeds)")
        ax.set_ylabel("accuracy %")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


BEGIN, END = "<!-- quality-benchmark:begin -->", "<!-- quality-benchmark:end -->"


def write_section(doc: Path, body: str) -> None:
    """Replace the generated section of ``doc`` (between the markers), keeping everything else."""
    from hkt_core.io import atomic_write_text

    text = doc.read_text() if doc.exists() else "# Results\n\n"
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(doc, text)


# -- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 seed, 2 epochs, 1,000 MNIST-1D signals")
    parser.add_argument("--tune", action="store_true", help="the validation search for KD and HKT settings")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10; --tune 2; --quick 1)")
    parser.add_argument("--data", default="digits,mnist1d", help="comma-separated: digits, mnist1d")
    parser.add_argument("--workers", type=int, default=2, help="parallel training processes (default 2)")
    parser.add_argument("--out", default=None, help="run folders (default runs/quality, runs/quality-quick, runs/quality-tune)")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/RESULTS.md and docs/img/quality*.png")
    args = parser.parse_args(argv)

    datas = [d.strip() for d in args.data.split(",") if d.strip()]
    unknown = [d for d in datas if d not in PAIRS]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; allowed: {', '.join(PAIRS)}")
    mode = "quick" if args.quick else "tune" if args.tune else "full"
    seeds = list(range(args.seeds if args.seeds else {"full": 10, "tune": 2, "quick": 1}[mode]))
    out = Path(args.out or ROOT / "runs" / ("quality" if mode == "full" else f"quality-{mode}"))
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    started = time.time()
    log(f"quality benchmark ({mode}): data {datas}, seeds {seeds}, {args.workers} workers, out {out}")
    parents = execute(parent_jobs(datas), out, args.quick, args.workers, log)
    if any("error" in r for r in parents):
        for r in parents:
            if "error" in r:
                log(r["trace"])
        return 1
    jobs = tune_jobs(datas, seeds) if args.tune else benchmark_jobs(datas, seeds)
    results = parents + execute(jobs, out, args.quick, args.workers, log)
    elapsed = time.time() - started
    failures = [r for r in results if "error" in r]
    for r in failures:
        log(f"FAILED {r['data']} {r['label']} seed {r['seed']}: {r['error']}")

    table = summarise(results)
    markdown = tune_markdown(table) if args.tune else results_markdown(table)
    meta = {"mode": mode, "seeds": seeds, "data": datas, "workers": args.workers, "elapsed_seconds": elapsed,
            "chosen": CHOSEN, "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "failures": [{k: r[k] for k in ("data", "label", "seed", "error")} for r in failures]}
    (out / "quality.json").write_text(json.dumps({"meta": meta, "table": table, "runs": results}, indent=1, default=str))
    (out / "quality.md").write_text(markdown)
    print(markdown)
    log(f"done in {elapsed / 60:.1f} min, {len(failures)} failed runs; tables in {out / 'quality.md'}")
    if mode == "full" and not args.no_docs:
        plot(table, ROOT / "docs" / "img" / "quality.png")
        trained = [r for r in results if "error" not in r and not r.get("reused")]
        compute = sum(r["train_seconds"] for r in results if "error" not in r) / 60
        body = (f"Generated by `{meta['command']}`: {len(seeds)} seeds, {len(results)} runs "
                f"({len(trained)} trained by this invocation in {elapsed / 60:.1f} min with {args.workers} workers, "
                f"the others reused from earlier invocations); {compute:.0f} min of training in all runs "
                f"together.\n\n{markdown}\n![quality](img/quality.png)\n")
        write_section(ROOT / "docs" / "RESULTS.md", body)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
