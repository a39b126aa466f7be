"""docs/RESULTS.md's quality section, generated from docs/results/quality.json (nothing typed by hand).

    python benchmarks/quality_report.py            # rewrite the section between its markers
    python benchmarks/quality_report.py --check    # exit 1 if docs/RESULTS.md is not what the JSON gives
    python benchmarks/quality_report.py --quick    # the same check, no figure drawn (CI)

Every figure of the section (tables and sentences) is computed here from the JSON: per-seed test
and validation accuracies of every method, the search, the parent's size and digest. Paired
comparisons are over the seeds both methods have: mean and standard deviation of the per-seed
differences, wins, the two-sided paired t-test p-value, and the smallest difference the pair can
detect at p < 0.05 with that spread (``t_0.975,n-1 * sd / sqrt(n)``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_plan as plan

from hkt_core.stats import paired

DOC = plan.ROOT / "docs" / "RESULTS.md"
FIGURE = plan.ROOT / "docs" / "img" / "quality.png"
BEGIN, END = "<!-- quality-benchmark:begin -->", "<!-- quality-benchmark:end -->"
#: the generated blocks of docs/RESULTS.md's Segmentation and Optical flow sections
SEG_BEGIN, SEG_END = "<!-- seg-quality:begin -->", "<!-- seg-quality:end -->"
FLOW_BEGIN, FLOW_END = "<!-- flow-sizing:begin -->", "<!-- flow-sizing:end -->"
SIZING_FILE = plan.RESULTS_FILE.with_name("quality_sizing.json")
#: the worker count the wall-time estimate of each pair's compute line assumes (the benchmark's default)
ESTIMATE_WORKERS = 2
ROW_ORDER = ("baseline", "kd", "hkt", "hkt-kd", "hkt-paper", "hkt-anneal", "hkt-learned-gate", *plan.STAGE_ROWS)
ROW_NOTES = {
    "baseline": "the child alone (cross-entropy)",
    "kd": "Hinton distillation from the parent",
    "hkt": "HKT, the configuration chosen on validation",
    "hkt-kd": "HKT + a distillation term on the native output (method `hkt-kd`)",
    "hkt-paper": "HKT with the paper's defaults (MAE in L1/L3, alphas 0.25/0.5/0.25, lam 0.6, `ga`)",
    "hkt-anneal": "chosen HKT, lam annealed to 0 (`lam_schedule = \"anneal\"`)",
    "hkt-learned-gate": "chosen HKT, learned per-point gate (mixture `ga-learned`)",
    "hkt-3": "chosen HKT at 3 stages, automatic alignment (mixing at an intermediate map and the pooled vector)",
    "hkt-4": "chosen HKT at 4 stages, automatic alignment",
    "hkt-3-random": "`hkt-3` on a random valid alignment drawn with each run's seed (the control)",
    "fitnet": "FitNet hints at `hkt-3`'s automatic points (method `fitnet`, hint weight chosen on validation)",
    "fitnet-random": "`fitnet` on a random valid alignment drawn with each run's seed (the control)",
    "fitnet-kd": "FitNet hints + Hinton KD (method `fitnet-kd`, on KD's chosen temperature and weight)",
    "attention-transfer": "attention transfer (Zagoruyko & Komodakis: beta 1000, p 2, the paper's settings, not "
                          "searched) at the aligned points of 3 stages",
    "attention-transfer-random": "`attention-transfer` on a random valid alignment drawn with each run's seed (the "
                                 "control)",
    "dkd": "decoupled KD (the DKD paper's ResNet-56 -> ResNet-20 setting, not searched)",
}
#: rows whose points the automatic alignment chose (the goal line asks of each)
AUTO_ALIGNED = ("hkt-3", "hkt-4", "fitnet", "fitnet-kd")

#: published results, for users who run the CIFAR pairs at their own scale (not measured here)
ANCHORS = [
    ("CIFAR-10", "ResNet-110 -> ResNet-20", "KD", "92.82"),
    ("CIFAR-100", "ResNet-110 -> ResNet-20", "baseline (ResNet-20 alone)", "69.06"),
    ("CIFAR-100", "ResNet-110 -> ResNet-20", "KD", "70.67"),
    ("CIFAR-100", "ResNet-110 -> ResNet-20", "CRD", "71.46"),
    ("CIFAR-100", "ResNet-110 -> ResNet-20", "DKD", "71.06"),
    ("CIFAR-100", "ResNet-110 -> ResNet-20", "MLKD with logit standardisation", "72.27"),
]


# -- statistics ----------------------------------------------------------------------------------

def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def by_seed(row: dict[str, Any], key: str = "test") -> dict[int, float]:
    return dict(zip(row["seeds"], row[key]))


#: how each primary metric is named in the tables, and the unit of a difference of it
METRIC_LABELS = {"accuracy": ("accuracy %", "points"), "dice": ("Dice %", "points"), "epe": ("EPE px", "px")}


def metric(entry: dict[str, Any]) -> str:
    """The pair's primary metric (results written before it was recorded are accuracy)."""
    return entry.get("metric", "accuracy")


def higher(entry: dict[str, Any]) -> bool:
    return entry.get("higher_is_better", True)


def label(entry: dict[str, Any]) -> str:
    """The metric as a column heading: ``accuracy %``, ``Dice %``, ``EPE px``."""
    return METRIC_LABELS.get(metric(entry), (metric(entry), ""))[0]


def unit(entry: dict[str, Any]) -> str:
    """The unit of a difference of the metric: ``points`` (of a percentage), ``px``."""
    return METRIC_LABELS.get(metric(entry), ("", "units"))[1]


def compare(entry: dict[str, Any], a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """``a - b`` paired over the seeds both have (:func:`hkt_core.stats.paired`), in the metric's
    direction: ``wins`` counts the seeds where ``a`` is better (lower, for an error such as EPE) and
    ``ahead`` says whether the mean difference is in ``a``'s favour."""
    c = dict(paired(a, b))
    if not higher(entry):
        c["wins"], c["losses"] = c.get("losses", 0), c.get("wins", 0)
    c["ahead"] = c["n"] > 0 and (c["mean"] > 0 if higher(entry) else c["mean"] < 0)
    return c


def score(entry: dict[str, Any], value: float) -> str:
    """``99.38% accuracy``, ``91.20% Dice``, ``1.23 px EPE``."""
    name, u = label(entry).split()[0], label(entry).split()[-1]
    return f"{f2(value)}{u} {name}" if u == "%" else f"{f2(value)} {u} {name}"


def best_by_validation(entry: dict[str, Any], rows: list[str]) -> str:
    """The row of ``rows`` with the best mean validation score in the metric's direction."""
    sign = 1 if higher(entry) else -1
    return max(rows, key=lambda r: sign * mean_std(entry["methods"][r]["val"])[0])


# -- formatting ----------------------------------------------------------------------------------

def f2(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"


def fp(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def fdiff(c: dict[str, Any] | None) -> str:
    if not c or c["n"] == 0:
        return "-"
    return f"{c['mean']:+.2f} +- {f2(c['std'])} ({c['wins']}/{c['n']}, p={fp(c['p'])})"


def pairs_in_order(data: dict[str, Any]) -> list[str]:
    """The pairs of the results in the plan's order (the control first), then any others."""
    return [p for p in plan.PAIRS if p in data["pairs"]] + sorted(p for p in data["pairs"] if p not in plan.PAIRS)


def rows_of(entry: dict[str, Any]) -> list[str]:
    methods = entry["methods"]
    return [r for r in ROW_ORDER if r in methods] + sorted(r for r in methods if r not in ROW_ORDER)


# -- sections ------------------------------------------------------------------------------------

def mixing_points(entry: dict[str, Any]) -> str:
    """HKT's mixing points (not the predictions) as ``parent (kind) -> child (kind)``."""
    points = [p for p in entry.get("alignment", []) if p != entry.get("alignment", [None])[-1]]
    return "; ".join(f"`{p['parent']}` ({p.get('parent_kind', '?')}) -> `{p['child']}` ({p.get('child_kind', '?')})"
                     for p in points) or "-"


def setup_table(data: dict[str, Any]) -> list[str]:
    lines = ["| pair | models (parent -> child) | parent parameters | child parameters | ratio | test samples | "
             "parent test score | HKT mixing points: parent (kind) -> child (kind) | parent weights SHA-256 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for pair in pairs_in_order(data):
        e = data["pairs"][pair]
        models = (" -> ".join(f"`{e[f'{r}_model']}`" + (f" ({e[f'{r}_architecture']})" if e.get(f"{r}_architecture")
                                                          else "") for r in ("parent", "child"))
                  if e.get("parent_model") else "-")
        lines.append(f"| `{pair}` | {models} | {e['parent_params']:,} | {e['child_params']:,} | "
                     f"{e['parent_params'] / e['child_params']:.1f}x | {e['test_size']:,} | {score(e, e['parent_test'])} | "
                     f"{mixing_points(e)} | `{e['parent_sha256'][:16]}...` |")
    return lines


def overview_table(data: dict[str, Any]) -> list[str]:
    """One line per pair: the baseline, KD and the best HKT row, with the paired differences."""
    lines = ["| pair | test metric | baseline | KD | best HKT row (by validation) | best HKT vs baseline | best HKT vs KD |",
             "|---|---|---|---|---|---|---|"]
    for pair in pairs_in_order(data):
        e = data["pairs"][pair]
        m = e["methods"]
        best = best_hkt(e)
        cells = [f"{f2(mean_std(m[r]['test'])[0])} +- {f2(mean_std(m[r]['test'])[1])}" for r in ("baseline", "kd")]
        if best is None:
            lines.append(f"| `{pair}` | {label(e)} | {cells[0]} | {cells[1]} | - | - | - |")
            continue
        bm, bs = mean_std(m[best]["test"])
        lines.append(f"| `{pair}` | {label(e)} | {cells[0]} | {cells[1]} | `{best}` {f2(bm)} +- {f2(bs)} | "
                     f"{fdiff(compare(e, by_seed(m[best]), by_seed(m['baseline'])))} | "
                     f"{fdiff(compare(e, by_seed(m[best]), by_seed(m['kd'])))} |")
    return lines + ["", "Differences are paired over the seeds both rows have: mean +- std of the per-seed "
                        "differences in the metric's unit, points of a percentage or pixels (wins/n: seeds on "
                        "which the row is better, two-sided paired t-test p)."]


def search_tables(pair: str, entry: dict[str, Any]) -> list[str]:
    tuning = entry.get("tuning")
    if not tuning:
        return [f"No search recorded for `{pair}`.", ""]
    what = label(entry).split()[0]
    lines = [f"Seeds {', '.join(map(str, tuning['seeds']))}; {plan.CONFIGS} configurations per method; selection "
             f"on validation {what} only (the test column is shown for the record and was not used).", "",
             f"| method | configuration | settings | val {label(entry)} | test {label(entry)} (not used) | chosen |",
             "|---|---|---|---|---|---|"]
    space = plan.search_for(pair)
    known = [m for m in (*plan.MAIN_METHODS, *plan.FEATURE_METHODS, *plan.SEARCH) if m in tuning["search"]]
    for method in dict.fromkeys([*known, *sorted(tuning["search"])]):
        for name, result in tuning["search"].get(method, {}).items():
            settings = json.dumps(space.get(method, {}).get(name, {}), sort_keys=True)
            chosen = "**chosen**" if tuning["chosen"].get(method, {}).get("name") == name else ""
            if result.get("diverged_seeds"):
                seeds = ", ".join(map(str, result["diverged_seeds"]))
                lines.append(f"| {method} | `{name}` | `{settings}` | diverged (seed {seeds}) | - | {chosen} |")
                continue
            lines.append(f"| {method} | `{name}` | `{settings}` | {f2(mean_std(result['val'])[0])} | "
                         f"{f2(mean_std(result['test'])[0])} | {chosen} |")
    return lines + [""]


def comparison_table(entry: dict[str, Any]) -> list[str]:
    methods = entry["methods"]
    base, kd = by_seed(methods["baseline"]) if "baseline" in methods else {}, by_seed(methods.get("kd", {"seeds": [], "test": []}))
    lines = [f"| method | seeds | test {label(entry)} | median ({'min' if higher(entry) else 'max'}) | val {label(entry)} "
             f"| vs baseline ({unit(entry)}; wins/n, paired t-test p) | detectable vs baseline | vs KD | detectable vs KD "
             f"| training s / run (median) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows_of(entry):
        r = methods[row]
        tm, ts = mean_std(r["test"])
        vm, vs = mean_std(r["val"])
        vb = compare(entry, by_seed(r), base) if row != "baseline" and base else None
        vk = compare(entry, by_seed(r), kd) if row not in ("baseline", "kd") and kd else None
        worst = min(r["test"]) if higher(entry) else max(r["test"])
        lines.append(f"| {row} | {len(r['seeds'])} | {f2(tm)} +- {f2(ts)} | {f2(statistics.median(r['test']))} "
                     f"({f2(worst)}) | {f2(vm)} +- {f2(vs)} | {fdiff(vb)} | "
                     f"{f2(vb['detectable']) if vb else '-'} | {fdiff(vk)} | {f2(vk['detectable']) if vk else '-'} | "
                     f"{_seconds(r)} |")
    notes = row_notes(entry)
    lines += ["", "Rows: " + "; ".join(f"`{row}`: {notes.get(row, row)}" for row in rows_of(entry)) + "."]
    return lines


def row_notes(entry: dict[str, Any]) -> dict[str, str]:
    """:data:`ROW_NOTES` as they read on ``entry``'s pair: its task's own loss and distillation, and on a
    card that is itself 3HKT (``hkt-3`` not run) the rows at the card's points."""
    notes = dict(ROW_NOTES)
    if metric(entry) != "accuracy":
        notes["baseline"] = "the child alone (the task's loss)"
        notes["kd"] = "the task's distillation from the parent (pixel-wise KD for segmentation)"
    if "hkt-3" in plan.NOT_RUN.get(entry.get("card", ""), {}):
        points = mixing_points(entry)
        notes["hkt"] = f"HKT at the card's 3 stages ({points}, then the output), the configuration chosen on validation"
        notes["hkt-3-random"] = "`hkt` on a random valid alignment of 3 stages drawn with each run's seed (the control)"
        notes["fitnet"] = (f"FitNet hints at the card's points ({points}; method `fitnet`, hint weight chosen on "
                           f"validation)")
        notes["attention-transfer"] = notes["attention-transfer"].replace("the aligned points of 3 stages",
                                                                          "the card's points")
    return notes


def _seconds(row: dict[str, Any]) -> str:
    times = [t for t in row.get("train_seconds", []) if t is not None]
    return f"{statistics.median(times):.0f}" if times else "-"


def best_hkt(entry: dict[str, Any]) -> str | None:
    """The HKT row with the best mean *validation* score among those run on every main seed."""
    methods = entry["methods"]
    n = len(methods.get("baseline", {}).get("seeds", []))
    candidates = [r for r in methods if r.startswith("hkt") and r not in plan.RANDOM_CONTROLS
                  and len(methods[r]["seeds"]) >= n]
    return best_by_validation(entry, candidates) if candidates else None


def verdicts(pair: str, entry: dict[str, Any]) -> list[str]:
    methods = entry["methods"]
    if "baseline" not in methods or "kd" not in methods:
        return []
    if pair == plan.TRANSFORMER_PAIR:
        return transformer_verdict(pair, entry)
    if pair in plan.DENSE_PAIRS:
        return dense_verdict(pair, entry)
    if pair != plan.CONTROL_PAIR:
        return hetero_verdict(pair, entry)
    base, kd = by_seed(methods["baseline"]), by_seed(methods["kd"])
    control = compare(entry, kd, base)
    bm, bs = mean_std(methods["baseline"]["test"])
    lines = [f"**Positive control** (`{pair}`): KD vs the baseline {control['mean']:+.2f} +- {f2(control['std'])} "
             f"points over {control['n']} seeds (ahead on {control['wins']}), paired t-test p = {fp(control['p'])}: "
             + ("**KD beats the baseline at p < 0.01**, so this benchmark can detect a real gain of this size."
                if control["p"] < 0.01 and control["ahead"] else
                "**the control is not met** (KD is not ahead of the baseline at p < 0.01); differences of this "
                "size are below what this benchmark separates."),
             "",
             f"**Noise.** Baseline {f2(bm)} +- {f2(bs)}% over {len(methods['baseline']['seeds'])} seeds "
             f"(minimum {f2(min(methods['baseline']['test']))}%). The smallest difference a paired comparison "
             f"detects at p < 0.05 is {f2(control['detectable'])} points for KD vs the baseline."]
    best = best_hkt(entry)
    if best is not None:
        vs_kd = compare(entry, by_seed(methods[best]), kd)
        reached = vs_kd["ahead"] and vs_kd["p"] < 0.05
        lines += ["", f"**Goal** (the best HKT variant ahead of KD at p < 0.05 over 10 seeds): the best HKT row by "
                      f"validation accuracy is `{best}`, {vs_kd['mean']:+.2f} +- {f2(vs_kd['std'])} points against KD "
                      f"over {vs_kd['n']} seeds (ahead on {vs_kd['wins']}), p = {fp(vs_kd['p'])}. "
                      + (("**Reached**" + ("." if control["p"] < 0.01 and control["ahead"] else
                                            ", on a pair whose positive control is not met at p < 0.01 (above): "
                                            "read it as evidence at p < 0.05 only.")) if reached else
                         f"**Not reached.** With this spread the comparison detects differences of "
                         f"{f2(vs_kd['detectable'])} points or more.")]
        lines += halves(entry, best, kd) + piloted(entry, best, kd)
    return lines


def dense_verdict(pair: str, entry: dict[str, Any]) -> list[str]:
    """A dense-output pair in the paper's regime: its positive control (the task's own distillation
    ahead of the baseline at p < 0.01), its noise, and whether the paper's claim for the regime holds."""
    methods = entry["methods"]
    base, kd = by_seed(methods["baseline"]), by_seed(methods["kd"])
    control = compare(entry, kd, base)
    met = control["ahead"] and control["p"] < 0.01
    bm, bs = mean_std(methods["baseline"]["test"])
    u = unit(entry)
    lines = [f"**Positive control** (`{pair}`, {plan.DENSE_PAIRS[pair].split(' (')[0]}, test {label(entry)}): "
             f"KD vs the baseline {control['mean']:+.2f} +- {f2(control['std'])} {u} over {control['n']} seeds "
             f"(ahead on {control['wins']}), paired t-test p = {fp(control['p'])}: "
             + ("**KD beats the baseline at p < 0.01**, so this pair can detect a real gain of this size."
                if met else "**the control is not met** (KD is not ahead of the baseline at p < 0.01), so this pair "
                            "cannot show whether inheritance pays."),
             "",
             f"**Noise.** Baseline {f2(bm)} +- {f2(bs)} over {len(methods['baseline']['seeds'])} seeds. The smallest "
             f"difference a paired comparison detects at p < 0.05 is {f2(control['detectable'])} {u} for KD vs the "
             f"baseline."]
    lines += robustness(entry, "kd", "baseline")
    lines += ["", "**The paper's claim** " + claim(pair, entry)]
    best = best_hkt(entry)
    if best is not None:
        lines += robustness(entry, best, "kd") + robustness(entry, best, "baseline")
    return lines + sizing_table(pair, entry)


#: a seed's run "failed" when its test score is this many points (or pixels) worse than its row's median
FAILED_BY = 20.0


def failed_seeds(entry: dict[str, Any], row: str) -> list[int]:
    """Seeds on which ``row`` ended far below its own median (:data:`FAILED_BY`): in segmentation, a run
    that never learned one of the foreground classes."""
    values = by_seed(entry["methods"][row])
    median = statistics.median(values.values())
    sign = 1 if higher(entry) else -1
    return sorted(s for s, v in values.items() if sign * (median - v) > FAILED_BY)


def sign_test(wins: int, n: int) -> float:
    """Two-sided sign test: the chance of a split at least this uneven among ``n`` seeds, by coin flips."""
    k = max(wins, n - wins)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n) if n else math.nan


def robustness(entry: dict[str, Any], a: str, b: str) -> list[str]:
    """Descriptive, not the criterion: ``a`` vs ``b`` by wins (sign test) and without the seeds on which
    either row failed (:func:`failed_seeds`)."""
    methods = entry["methods"]
    c = compare(entry, by_seed(methods[a]), by_seed(methods[b]))
    failed = sorted({*failed_seeds(entry, a), *failed_seeds(entry, b)})
    text = (f"**Robustness** (descriptive; the criterion is the paired t-test above): `{a}` is better than `{b}` on "
            f"{c['wins']} of {c['n']} seeds (two-sided sign test p = {fp(sign_test(c['wins'], c['n']))}), median "
            f"difference {statistics.median(by_seed(methods[a])[s] - by_seed(methods[b])[s] for s in sorted(set(by_seed(methods[a])) & set(by_seed(methods[b])))):+.2f} {unit(entry)}.")
    if failed:
        rest = compare(entry, {s: v for s, v in by_seed(methods[a]).items() if s not in failed},
                       {s: v for s, v in by_seed(methods[b]).items() if s not in failed})
        per_row = "; ".join(f"`{row}` on seed{'s' if len(f) > 1 else ''} {', '.join(map(str, f))}"
                            for row in (a, b) for f in [failed_seeds(entry, row)] if f)
        text += (f" Runs that failed (more than {FAILED_BY:.0f} {unit(entry)} below their row's median: in "
                 f"segmentation a foreground class never learned): {per_row}. Without seed"
                 f"{'s' if len(failed) > 1 else ''} {', '.join(map(str, failed))}: {fdiff(rest)}.")
    return ["", text]


def claim(pair: str, entry: dict[str, Any]) -> str:
    """One line: the best HKT row (by validation) against the baseline and against KD, with the
    detectable differences, and whether inheritance pays on ``pair``."""
    methods = entry["methods"]
    best = best_hkt(entry)
    regime = f"for {plan.DENSE_PAIRS[pair]}, " if pair in plan.DENSE_PAIRS else ""
    if best is None or "kd" not in methods:
        return f"{regime}on `{pair}`: no HKT row was run."
    u = unit(entry)
    vb = compare(entry, by_seed(methods[best]), by_seed(methods["baseline"]))
    vk = compare(entry, by_seed(methods[best]), by_seed(methods["kd"]))
    control = compare(entry, by_seed(methods["kd"]), by_seed(methods["baseline"]))
    on_base, on_kd = vb["p"] < 0.05, vk["p"] < 0.05
    if on_base and vb["ahead"] and on_kd and vk["ahead"]:
        verdict = "HKT is ahead of the child alone and of KD: inheritance pays beyond distillation here"
    elif on_base and vb["ahead"]:
        verdict = ("HKT is ahead of the child alone but " + ("behind KD" if on_kd else "not separable from KD")
                   + ": it does not pay beyond distillation here")
    elif on_base:
        verdict = "HKT is behind the child alone"
    else:
        verdict = "HKT does not separate from the child alone"
    if pair in plan.DENSE_PAIRS:
        holds = on_base and vb["ahead"]
        verdict += (". **The paper's claim for this regime " + ("holds here" if holds else "does not hold here")
                    + ("**" if holds and on_kd and vk["ahead"] else ("** (against the child alone; not against KD)"
                                                                    if holds else "**")))
    if not (control["ahead"] and control["p"] < 0.01):
        verdict += " (the pair's positive control is not met at p < 0.01)"
    return (f"{regime}on `{pair}`: the best HKT row by validation, `{best}`, vs the baseline "
            f"{vb['mean']:+.2f} +- {f2(vb['std'])} {u} ({vb['wins']}/{vb['n']}, p = {fp(vb['p'])}; detectable "
            f"{f2(vb['detectable'])}), vs KD {vk['mean']:+.2f} +- {f2(vk['std'])} {u} ({vk['wins']}/{vk['n']}, "
            f"p = {fp(vk['p'])}; detectable {f2(vk['detectable'])}): {verdict}.")


def verdict_lines(data: dict[str, Any]) -> list[str]:
    """Does inheritance pay? One generated line per pair."""
    lines = []
    for pair in pairs_in_order(data):
        entry = data["pairs"][pair]
        if {"baseline", "kd"} <= set(entry["methods"]):
            lines.append(f"- `{pair}` ({label(entry).split()[0]}): " + claim(pair, entry).split(f"on `{pair}`: ", 1)[1])
    return lines + ["", "Each line: mean +- std of the per-seed differences (wins/n, two-sided paired t-test p; "
                        "detectable: the smallest difference the pair separates at p < 0.05 with that spread)."]


def halves(entry: dict[str, Any], row: str, kd: dict[int, float]) -> list[str]:
    """The goal's comparison on each half of the seeds: does the second half confirm the first?"""
    methods = entry["methods"]
    seeds = sorted(set(by_seed(methods[row])) & set(kd))
    if len(seeds) < 20:
        return []
    half = len(seeds) // 2
    parts = [seeds[:half], seeds[half:]]
    found = [compare(entry, {s: by_seed(methods[row])[s] for s in part}, {s: kd[s] for s in part}) for part in parts]
    return ["", f"**Replication.** The same comparison on seeds {parts[0][0]}-{parts[0][-1]}: {fdiff(found[0])}; "
                f"on seeds {parts[1][0]}-{parts[1][-1]}: {fdiff(found[1])}."]


def piloted(entry: dict[str, Any], row: str, kd: dict[int, float]) -> list[str]:
    """For a row whose configuration entered the search after a pilot that saw test accuracy: the
    comparison with KD on the seeds the pilot did not use."""
    methods = entry["methods"]
    config = methods[row].get("config")
    seeds = plan.PILOTED.get(config)
    if seeds is None:
        return []
    fresh = {s: v for s, v in by_seed(methods[row]).items() if s not in seeds}
    c = compare(entry, fresh, kd)
    return ["", f"**Disclosure.** The configuration `{config}` entered the search after a pilot on seeds "
                f"{', '.join(map(str, seeds))} whose test accuracy was seen. On the other seeds alone, `{row}` vs KD "
                f"is {fdiff(c)}."]


def _outcome(c: dict[str, Any], against: str, units: str = "points") -> str:
    if c["p"] < 0.05:
        return f"**{'ahead of' if c['ahead'] else 'behind'} {against}** (p < 0.05)"
    return f"not separable from {against} (the comparison detects {f2(c['detectable'])} {units} or more)"


def hetero_verdict(pair: str, entry: dict[str, Any]) -> list[str]:
    """Does inheritance across families pay on ``pair``? KD and the best HKT row against the baseline."""
    methods = entry["methods"]
    base, kd = by_seed(methods["baseline"]), by_seed(methods["kd"])
    control = compare(entry, kd, base)
    lines = [f"**Heterogeneous inheritance** (`{pair}`, mixing {mixing_points(entry)}): KD vs the baseline "
             f"{control['mean']:+.2f} +- {f2(control['std'])} points over {control['n']} seeds (ahead on "
             f"{control['wins']}), p = {fp(control['p'])}: KD is {_outcome(control, 'the baseline')}."]
    best = best_hkt(entry)
    if best is not None:
        vb, vk = compare(entry, by_seed(methods[best]), base), compare(entry, by_seed(methods[best]), kd)
        lines[0] += (f" The best HKT row by validation accuracy, `{best}`, vs the baseline {vb['mean']:+.2f} +- "
                     f"{f2(vb['std'])} points (p = {fp(vb['p'])}): {_outcome(vb, 'the baseline')}; vs KD "
                     f"{vk['mean']:+.2f} +- {f2(vk['std'])} points (p = {fp(vk['p'])}): {_outcome(vk, 'KD')}.")
    return lines


def transformer_verdict(pair: str, entry: dict[str, Any]) -> list[str]:
    """The transformer pair: does KD, its positive control, pay? And, when it does not, what sizes were tried."""
    methods = entry["methods"]
    control = compare(entry, by_seed(methods["kd"]), by_seed(methods["baseline"]))
    met = control["ahead"] and control["p"] < 0.05
    lines = [f"**Transformer pair** (`{pair}`, built from transformers configurations through hkt-zoo): KD vs the "
             f"baseline {control['mean']:+.2f} +- {f2(control['std'])} points over {control['n']} seeds (ahead on "
             f"{control['wins']}), p = {fp(control['p'])}: KD is {_outcome(control, 'the baseline')}. "
             + ("Its positive control is met." if met else
                "**Its positive control is not met**: on this pair distillation does not pay, so it cannot yet "
                "show whether inheritance does.")]
    return lines + sizing_table(pair, entry)


def sizing_table(pair: str, entry: dict[str, Any] | None = None) -> list[str]:
    """The sizes of ``pair`` tried for a regime where KD beats the baseline (validation only), with
    each run's training time, from ``docs/results/quality_sizing.json`` when it holds them."""
    path = plan.RESULTS_FILE.with_name("quality_sizing.json")
    sizing = json.loads(path.read_text()).get("pairs", {}).get(pair) if path.is_file() else None
    if not sizing:
        return []
    fake = {"metric": sizing.get("metric", "accuracy")}
    what = label(fake)
    samples = "child training images" if fake["metric"] == "dice" else "child training sequences"
    recipe = ("the card's settings" if sizing.get("recipe_source") == "card" else "the pair's chosen recipe")
    command = sizing.get("command", "python benchmarks/quality_sizing.py")
    timed = all("train_seconds" in r for r in sizing["regimes"])
    lines = ["", f"**Sizes tried** (`{command}`, seeds {', '.join(map(str, sizing['seeds']))}, validation "
                 f"{what.split()[0]} only; the baseline at {recipe}, KD at each setting):", "",
             f"| child width | {samples} | baseline val {what} | " +
             " | ".join(f"KD `{k}` val {what}" for k in sizing["kd_settings"]) + " | best KD - baseline (points) |"
             + (" best KD - baseline per seed (mean +- std) | training s / run: baseline, KD (median) |" if timed else ""),
             "|---|---|---|" + "---|" * len(sizing["kd_settings"]) + "---|" + ("---|---|" if timed else "")]
    for r in sizing["regimes"]:
        kd = [mean_std(r["kd"][k])[0] for k in sizing["kd_settings"]]
        base = mean_std(r["baseline"])[0]
        line = (f"| {r['width']} | {r['n_train']:,} | {f2(base)} | " + " | ".join(f2(v) for v in kd)
                + f" | {max(kd) - base:+.2f} |")
        if timed:
            best = list(sizing["kd_settings"])[kd.index(max(kd))]
            diffs = [a - b for a, b in zip(r["kd"][best], r["baseline"])]
            dm, ds = mean_std(diffs)
            times = r["train_seconds"]
            line += (f" {dm:+.2f} +- {f2(ds)} (`{best}`) | {statistics.median(times['baseline']):.0f}, "
                     f"{statistics.median(times['kd']):.0f} |")
        lines.append(line)
    note = f"These are {len(sizing['seeds'])}-seed means on the validation split."
    epochs = {r["n_train"]: r.get("epochs") for r in sizing["regimes"] if r.get("epochs")}
    if epochs:
        note += (" Epochs per size: " + ", ".join(f"{e} at {n:,} {samples.split()[-1]}" for n, e in epochs.items())
                 + (" (the same number of optimisation steps)." if len(set(epochs.values())) > 1 else "."))
    chosen = (entry or {}).get("tuning", {}).get("chosen", {})
    methods = (entry or {}).get("methods", {})
    if pair == plan.TRANSFORMER_PAIR and {"baseline", "kd"} <= set(chosen) and {"baseline", "kd"} <= set(methods):
        ahead_val = chosen["kd"]["val_mean"] > chosen["baseline"]["val_mean"]
        test = compare(entry, by_seed(methods["kd"]), by_seed(methods["baseline"]))
        note += (f" On the card's own size, the search's validation means put KD "
                 f"{'ahead' if ahead_val else 'behind'} ({f2(chosen['kd']['val_mean'])} vs "
                 f"{f2(chosen['baseline']['val_mean'])}), and the {test['n']}-seed test comparison above puts it "
                 f"{'ahead' if test['ahead'] else 'behind'} ({test['mean']:+.2f} points).")
    if pair == plan.TRANSFORMER_PAIR:
        note += " No other size was compared over 20 seeds."
    return lines + ["", note]


def ablations(entry: dict[str, Any]) -> list[str]:
    """What each part of the method changed: paired differences between HKT rows on common seeds."""
    methods = entry["methods"]
    steps = [("hkt", "hkt-paper", "the chosen loss weighting vs the paper's defaults"),
             ("hkt-kd", "hkt", "adding the distillation term on the native output"),
             ("hkt-anneal", "hkt", "annealing lam to 0"),
             ("hkt-learned-gate", "hkt", "a learned per-point gate instead of the fixed lam"),
             ("hkt", "baseline", "HKT (chosen) vs the child alone"),
             ("hkt-kd", "kd", "HKT + KD vs KD alone")]
    lines = [f"| change | rows compared | paired difference ({unit(entry)}; wins/n, p) | detectable |", "|---|---|---|---|"]
    beyond = []
    for a, b, what in steps:
        if a in methods and b in methods:
            if _same_runs(methods, a, b):
                lines.append(f"| {what} | `{a}` - `{b}` | the same runs (both rows are configuration "
                             f"`{methods[a]['config']}`) | - |")
                continue
            c = compare(entry, by_seed(methods[a]), by_seed(methods[b]))
            lines.append(f"| {what} | `{a}` - `{b}` | {fdiff(c)} | {f2(c['detectable'])} |")
            if c["p"] < 0.05:
                beyond.append(f"{what} ({c['mean']:+.2f} {unit(entry)} over {c['n']} seeds, p = {fp(c['p'])})")
    lines += ["", "Beyond the seed-to-seed noise (p < 0.05): " + ("; ".join(beyond) if beyond else "none") + ". "
              "Every other change is within the noise of its seeds."]
    return lines


def _points(alignment: list[dict[str, Any]] | None) -> str:
    """The mixing (or hint) points of one alignment, the predictions pair left out."""
    return "; ".join(f"`{p['parent']}` ({p.get('parent_kind', '?')}) -> `{p['child']}` ({p.get('child_kind', '?')})"
                     for p in (alignment or [])[:-1]) or "-"


def _compare(entry: dict[str, Any], a: str, b: str) -> str:
    methods = entry["methods"]
    if a not in methods or b not in methods:
        return f"| `{a}` - `{b}` | not run | - |"
    c = compare(entry, by_seed(methods[a]), by_seed(methods[b]))
    return f"| `{a}` - `{b}` | {fdiff(c)} | {f2(c['detectable'])} |"


def alignment_matters(entry: dict[str, Any]) -> list[str]:
    """Each auto-aligned row against its random-alignment control, paired by seed."""
    methods = entry["methods"]
    present = [(auto, control) for control, auto in plan.random_controls(entry.get("card")).items()
               if auto in methods or control in methods]
    if not present:
        return []
    lines = ["Each random control draws, per seed, a valid alignment uniformly among all order-preserving chains of "
             "pairs that can mix (`hkt_core.align(..., method=\"random\", seed=S)`), the predictions pair last; its "
             "points are recorded per seed in `quality.json` (`alignments`).", "",
             f"| auto-aligned - random control | paired difference ({unit(entry)}; wins/n, p) | detectable |",
             "|---|---|---|"]
    lines += [_compare(entry, auto, control) for auto, control in present]
    lines.append("")
    for auto, control in present:
        if control in methods:
            drawn = methods[control].get("alignments") or {"all": methods[control].get("alignment")}
            distinct = {json.dumps(a, sort_keys=True) for a in drawn.values()}
            lines.append(f"- `{auto}` mixes at {_points(methods.get(auto, {}).get('alignment'))}; `{control}` drew "
                         f"{len(distinct)} distinct alignments over {len(drawn)} seeds (seed "
                         f"{next(iter(drawn))}: {_points(next(iter(drawn.values())))}).")
    verdict = []
    for auto, control in present:
        if auto in methods and control in methods:
            c = compare(entry, by_seed(methods[auto]), by_seed(methods[control]))
            verdict.append(f"`{auto}` is {_outcome(c, 'its random control', unit(entry))}")
    if verdict:
        lines += ["", "**Verdict:** " + "; ".join(verdict) + "."]
    return lines


def multi_stage(entry: dict[str, Any]) -> list[str]:
    """hkt-3 / hkt-4 against the pooled-only HKT, KD and FitNet (on a card that is itself 3HKT: ``hkt``
    against KD and FitNet); FitNet and attention transfer against the baseline and KD."""
    methods = entry["methods"]
    skipped = plan.NOT_RUN.get(entry.get("card", ""), {})
    stage = [r for r in ("hkt-3", "hkt-4") if r in methods]
    if not stage and "fitnet" not in methods:
        return []
    lines = [f"| comparison | paired difference ({unit(entry)}; wins/n, p) | detectable |", "|---|---|---|"]
    for row in stage:
        lines += [_compare(entry, row, "hkt"), _compare(entry, row, "kd"), _compare(entry, row, "fitnet")]
    if "hkt-3" in skipped and "hkt" in methods:  # the card's hkt is the 3-stage row
        lines += [_compare(entry, "hkt", "kd"), _compare(entry, "hkt", "fitnet")]
    lines += [_compare(entry, "fitnet", "baseline"), _compare(entry, "fitnet", "kd"),
              _compare(entry, "fitnet-kd", "kd")]
    if "attention-transfer" in methods:
        lines += [_compare(entry, "attention-transfer", "baseline"), _compare(entry, "attention-transfer", "kd")]
    fixed = (f"at {mixing_points(entry)} (the card's fixed pairs)" if len(entry.get("alignment", [])) > 2
             else "only at the pooled vector (the card's fixed pair)")
    lines += ["", f"`hkt` mixes {fixed}; " + "; ".join(
        f"`{row}` at {_points(methods[row].get('alignment'))}" for row in (*stage, "fitnet") if row in methods) + "."]
    gone = entry.get("diverged", {})
    for row in (r for r in plan.STAGE_ROWS if r in gone):
        d = gone[row]
        lines += ["", f"**`{row}` diverged** (configuration `{d['config']}`) on {len(d['seeds'])} seed(s) "
                      f"({', '.join(map(str, d['seeds']))}), so it has no {label(entry).split()[0]} to compare: {d['error']}"]
    for row, reason in skipped.items():
        if row not in methods and row not in gone:
            lines += ["", f"`{row}` was not run: {reason}"]
    if "hkt-4" not in methods and "hkt-4" not in gone and "hkt-4" not in skipped:
        lines += ["", "`hkt-4` was not run: the new rows' budget (one session on 2 workers) did not fit it."]
    return lines


def goal_auto_aligned(entry: dict[str, Any]) -> list[str]:
    """The goal asked of every auto-aligned row: ahead of KD at p < 0.05, on both halves of the seeds."""
    methods = entry["methods"]
    if "kd" not in methods:
        return []
    kd = by_seed(methods["kd"])
    parts, reached = [], []
    card_3hkt = "hkt-3" in plan.NOT_RUN.get(entry.get("card", ""), {})  # its hkt is the aligned 3-stage row
    for row in (("hkt",) if card_3hkt else ()) + AUTO_ALIGNED + ("attention-transfer",):
        if row not in methods:
            continue
        mine = by_seed(methods[row])
        c = compare(entry, mine, kd)
        seeds = sorted(set(mine) & set(kd))
        text = f"`{row}` {c['mean']:+.2f} +- {f2(c['std'])} over {c['n']} seeds, p = {fp(c['p'])}"
        half_ok = False
        if len(seeds) >= 20:
            half = len(seeds) // 2
            h = [compare(entry, {s: mine[s] for s in part}, {s: kd[s] for s in part})
                 for part in (seeds[:half], seeds[half:])]
            text += f" (halves: {fdiff(h[0])}; {fdiff(h[1])})"
            half_ok = all(x["ahead"] and x["p"] < 0.05 for x in h)
        else:
            text += " (fewer than 20 seeds: no halves)"
        if c["ahead"] and c["p"] < 0.05 and half_ok:
            reached.append(row)
        parts.append(text)
    if not parts:
        return []
    kind = "aligned methods (the card's points, which `fitnet` and `attention-transfer` share)" if card_3hkt \
        else "auto-aligned methods"
    return [f"**Goal, {kind}** (ahead of KD at p < 0.05 over 20 seeds and on both halves of the seeds): "
            + "; ".join(parts) + ". " + (f"**Reached** by {', '.join(f'`{r}`' for r in reached)}." if reached
                                        else "**Not reached** by any of them.")]


def earlier_parent(entry: dict[str, Any]) -> list[str]:
    """The rows of an earlier parent of the pair, kept in the JSON but not compared."""
    old = entry.get("earlier_parent")
    if not old or not old.get("methods"):
        return []
    return [f"**Parent trained anew.** The pair's parent was trained again (SHA-256 `{entry['parent_sha256'][:16]}...`, "
            f"test {f2(entry['parent_test'])}%; the earlier one `{old['parent_sha256'][:16]}...`, test "
            f"{f2(old.get('parent_test'))}%). Rows that inherit from a parent are compared only on the new one; "
            f"the earlier parent's rows {', '.join(f'`{r}`' for r in old['methods'])} are kept in `quality.json` "
            f"(`earlier_parent`) and not rerun. The baseline uses no parent and is kept."]


def compute_used(entry: dict[str, Any]) -> dict[str, Any]:
    """Training time of the pair's distinct runs (a run is a method, configuration and seed; the
    comparison reuses the search's runs of the chosen configurations), from the recorded
    ``train_seconds``."""
    runs: dict[tuple[str, str, int], float] = {}
    for method, configs in entry.get("tuning", {}).get("search", {}).items():
        for name, c in configs.items():
            for seed, s in zip(c["seeds"], c.get("train_seconds", [None] * len(c["seeds"]))):
                runs[(method, name, seed)] = s
    tuned_runs = len(runs)
    for row, r in entry["methods"].items():
        method = plan.METHOD_OF_ROW.get(row, row)
        for seed, s in zip(r["seeds"], r.get("train_seconds", [None] * len(r["seeds"]))):
            runs[(method, r["config"], seed)] = s
    known = [s for s in runs.values() if s is not None]
    return {"runs": len(runs), "search_runs": tuned_runs, "timed": len(known), "seconds": sum(known),
            "parent_seconds": entry.get("parent_train_seconds")}


def compute_line(pair: str, entry: dict[str, Any], workers: int) -> str:
    c = compute_used(entry)
    parent = c["parent_seconds"]
    total = c["seconds"] + (parent or 0.0)
    untimed = c["runs"] - c["timed"]
    return (f"**Compute** (`{pair}`): {c['runs']} distinct child runs ({c['search_runs']} of them in the search), "
            f"{_duration(c['seconds'])} of training summed over runs"
            + (f" ({untimed} runs without a recorded time)" if untimed else "")
            + (f", plus {_duration(parent)} for the parent" if parent else "")
            + f"; on {workers} workers about {_duration(total / workers)} of wall time.")


def _same_runs(methods: dict[str, Any], a: str, b: str) -> bool:
    """Whether two rows are the same training runs (one method and configuration)."""
    return (plan.METHOD_OF_ROW.get(a, a) == plan.METHOD_OF_ROW.get(b, b)
            and methods[a].get("config") == methods[b].get("config"))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def anchors_table() -> list[str]:
    lines = ["| data set | pair | method | published test accuracy % |", "|---|---|---|---|"]
    lines += [f"| {d} | {p} | {m} | {a} |" for d, p, m, a in ANCHORS]
    return lines


def section(data: dict[str, Any]) -> str:
    meta = data.get("meta", {})
    commands = meta.get("commands") or [meta.get("command", "python benchmarks/quality.py")]
    out = ["Generated by `python benchmarks/quality_report.py` from `docs/results/quality.json` (written by "
           + ("; then ".join(f"`{c}`" for c in commands)) + ").", "", "### Pairs", ""]
    out += setup_table(data) + ["", "### At a glance", ""] + overview_table(data) + [""]
    out += ["### Does inheritance pay? One line per pair", ""] + verdict_lines(data) + [""]
    out += ["![test score per pair and method, every seed](img/quality.png)", ""]
    for pair in pairs_in_order(data):
        entry = data["pairs"][pair]
        out += [f"### {pair}: validation search", ""] + search_tables(pair, entry)
        out += [f"### {pair}: comparison", ""] + comparison_table(entry) + [""]
        out += earlier_parent(entry) + ([""] if earlier_parent(entry) else [])
        out += verdicts(pair, entry) + [""]
        if goal_auto_aligned(entry):
            out += goal_auto_aligned(entry) + [""]
        if alignment_matters(entry):
            out += [f"### {pair}: Does the alignment matter?", ""] + alignment_matters(entry) + [""]
        if multi_stage(entry):
            out += [f"### {pair}: Multi-stage inheritance", ""] + multi_stage(entry) + [""]
        if len(ablations(entry)) > 2 + 2:  # a table with rows (header, rule, blank, summary)
            out += [f"### {pair}: which part of the method moves the result", ""] + ablations(entry) + [""]
        out += [compute_line(pair, entry, ESTIMATE_WORKERS), ""]
    out += ["### Published anchors (NOT measured here)", "",
            "Figures reported in the literature for the CIFAR pairs, for comparison when the command below is "
            "run at the users' own scale; none of them was measured by this project.", ""] + anchors_table()
    return "\n".join(out).rstrip() + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """One panel per pair: every seed's test score (the pair's metric) per row (dots), mean +- std (bars)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pairs = pairs_in_order(data)
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        entry = data["pairs"][pair]
        rows = rows_of(entry)
        for x, row in enumerate(rows):
            values = entry["methods"][row]["test"]
            m, s = mean_std(values)
            color = "tab:gray" if row == "baseline" else "tab:blue" if row == "kd" else "tab:orange"
            ax.errorbar([x], [m], yerr=[s], fmt="o", color=color, capsize=4, markersize=7)
            ax.scatter([x + 0.18] * len(values), values, s=9, color=color, alpha=0.5)
        ax.set_xticks(range(len(rows)), rows, rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{pair}\n{entry['parent_params'] / entry['child_params']:.1f}x, "
                     f"{entry['test_size']:,} test samples", fontsize=8)
        ax.set_ylabel(f"test {label(entry)} (mean +- std; dots: seeds)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sizing() -> dict[str, Any]:
    return json.loads(SIZING_FILE.read_text()).get("pairs", {}) if SIZING_FILE.is_file() else {}


def seg_section(data: dict[str, Any]) -> str:
    """The Segmentation section's rows: the quality benchmark's segmentation pair, from the JSON."""
    pair = plan.SEG_PAIR
    entry = data["pairs"].get(pair)
    head = (f"Generated by `python benchmarks/quality_report.py` from `docs/results/quality.json` and "
            f"`docs/results/quality_sizing.json` (the commands that wrote them are listed in the quality section "
            f"above and in the sizing line below). The pair `{pair}` is one of the quality benchmark's; its search, "
            f"alignment and multi-stage sections are there.")
    if entry is None:
        return head + "\n\nNot measured yet: `python benchmarks/quality.py --pairs " + pair + "` has not been run.\n"
    models = f"`{entry.get('parent_model')}` -> `{entry.get('child_model')}`"
    out = [head, "", f"**The pair.** {models}: {entry['parent_params']:,} -> {entry['child_params']:,} parameters "
                     f"({entry['parent_params'] / entry['child_params']:.1f}x); the parent's test {label(entry)} "
                     f"{f2(entry['parent_test'])} (on its own test split); the children tested on "
                     f"{entry['test_size']:,} generated images none of which any network trained on. Mixing points "
                     f"of `hkt`: {mixing_points(entry)}, then the output.", ""]
    out += comparison_table(entry) + [""] + verdicts(pair, entry) + ["", compute_line(pair, entry, ESTIMATE_WORKERS)]
    sizing = _sizing().get(pair)
    if sizing:
        seconds = sum(sum(r["train_seconds"]["baseline"]) + sum(r["train_seconds"]["kd"]) for r in sizing["regimes"])
        runs = sum(len(r["train_seconds"]["baseline"]) + len(r["train_seconds"]["kd"]) for r in sizing["regimes"])
        out += ["", f"**Compute of the sizing** (`{sizing['command']}`): {runs} child runs, {_duration(seconds)} of "
                    f"training summed over runs; on {sizing.get('workers', ESTIMATE_WORKERS)} workers about "
                    f"{_duration(seconds / sizing.get('workers', ESTIMATE_WORKERS))} of wall time."]
    return "\n".join(out).rstrip() + "\n"


#: the rows a flow pair would run, as the segmentation pair does (search: 3 configurations x the tuning
#: seeds of each searched method; comparison: 20 seeds of every row)
FLOW_ROWS = ("baseline", "kd", "hkt", "hkt-kd", "hkt-3-random", "fitnet", "fitnet-random", "fitnet-kd",
             "attention-transfer", "attention-transfer-random")


#: RAFT's published first training stage (not measured here): 100,000 steps on FlyingChairs, batch 10
#: (the RAFT repository's train_standard.sh)
RAFT_CHAIRS_STEPS = 100_000
#: a flow network "has learned flow" when its EPE is below this share of predicting zero flow's
LEARNED = 0.9


def flow_section(data: dict[str, Any]) -> str:
    """The Optical flow section's sizing: what one run costs at the smallest sensible size, whether
    the control (KD ahead of the baseline) looks reachable, and what 20 seeds of every row would cost."""
    pair = plan.FLOW_SIZING_PAIR
    sizing = _sizing().get(pair)
    if not sizing:
        return (f"Not measured yet: `python benchmarks/quality_sizing.py --pair {pair}` has not been run.\n")
    r = sizing["regimes"][0]
    settings = list(sizing["kd_settings"])
    base = dict(zip(sizing["seeds"], r["baseline"]))
    zero = sizing.get("zero_flow_val")
    lines = [f"Generated by `python benchmarks/quality_report.py` from `docs/results/quality_sizing.json` (written by "
             f"`{sizing['command']}`): the pair `{pair}` (card in `plugins/hkt-flow`), sized, not run: validation "
             f"EPE only (px, lower is better), {r['epochs']} epochs of {r['n_train']} training pairs per child, "
             f"the parent trained once on its own data ({_duration(sizing.get('parent_train_seconds') or 0)}).", "",
             "| seed | baseline val EPE px | " + " | ".join(f"KD `{k}` val EPE px" for k in settings)
             + " | predicting zero flow, val EPE px | training s: baseline, KD |",
             "|---|---|" + "---|" * len(settings) + "---|---|"]
    kd_times = r["train_seconds"]["kd"]
    per_seed_kd = len(settings)
    for i, seed in enumerate(sizing["seeds"]):
        kd = [r["kd"][k][i] for k in settings]
        times = kd_times[i * per_seed_kd:(i + 1) * per_seed_kd]
        lines.append(f"| {seed} | {f2(base[seed])} | " + " | ".join(f2(v) for v in kd) + f" | {f2(zero)} | "
                     f"{r['train_seconds']['baseline'][i]:.0f}, {', '.join(f'{t:.0f}' for t in times)} |")
    t_base = statistics.median(r["train_seconds"]["baseline"])
    t_kd = statistics.median(kd_times)
    ratios, source = _row_cost_ratios(data)
    runs = _flow_runs()
    seconds = sum(n * (t_base if row == "baseline" else t_kd * ratios.get(row, 1.0)) for row, n in runs.items())
    best_kd = min(settings, key=lambda k: mean_std(r["kd"][k])[0])
    kd_mean, base_mean = mean_std(r["kd"][best_kd])[0], mean_std(r["baseline"])[0]
    beats_zero = zero is not None and min(base_mean, kd_mean) < LEARNED * zero
    parent_val, parent_zero = sizing.get("parent_val"), sizing.get("parent_zero_flow_val")
    parent_learned = parent_val is not None and parent_zero is not None and parent_val < LEARNED * parent_zero
    steps, parent_seconds = sizing.get("parent_steps"), sizing.get("parent_train_seconds")
    lines += ["", f"**Cost of one run.** A baseline child trained in {t_base:.0f} s (median), a KD child in "
                  f"{t_kd:.0f} s (the parent's forward pass on every batch).",
              "", f"**What 20 seeds of every row would cost.** The rows of the segmentation pair "
                  f"({', '.join(f'`{x}`' for x in FLOW_ROWS)}): the search ({plan.CONFIGS} configurations x "
                  f"{len(plan.TUNE_SEEDS)} seeds of each searched method) and 20 seeds of every row make "
                  f"{sum(runs.values())} distinct runs; at the measured times (the other rows priced at KD's time "
                  f"times {source}) that is {_duration(seconds)} of training, about "
                  f"{_duration(seconds / ESTIMATE_WORKERS)} on {ESTIMATE_WORKERS} workers: "
                  + ("within" if seconds / ESTIMATE_WORKERS <= 45 * 60 else "well beyond")
                  + " the 45 minutes a pair is given here.",
              "", "**Is the control reachable?** " + (
                  f"The best KD setting by validation, `{best_kd}`, has validation EPE {f2(kd_mean)} px against the "
                  f"baseline's {f2(base_mean)} px ({kd_mean - base_mean:+.2f} px over {len(sizing['seeds'])} seeds; "
                  f"lower is better) and predicting zero flow {f2(zero)} px. "
                  + ("At this size the children beat zero flow by more than "
                     f"{1 - LEARNED:.0%}, so a 20-seed control is a question of spread, which two seeds cannot settle."
                     if beats_zero else
                     f"At this size no child is {1 - LEARNED:.0%} better than predicting zero flow: the children have "
                     f"not learned flow, so the control cannot be met at a size that fits."))]
    if parent_val is not None and parent_zero is not None and steps:
        lines += ["", f"**The parent.** After {steps:,} steps on its own, plentiful data (the card's "
                      f"`[parent_dataset_options]`; {_duration(parent_seconds or 0)} of training), its validation EPE "
                      f"is {parent_val:.3f} px against {parent_zero:.3f} px for predicting zero flow on its own "
                      f"validation split ({parent_val / parent_zero - 1:+.1%}): "
                      + ("it has learned flow." if parent_learned else
                         "it has not learned flow either, so there is nothing yet for a child to inherit.")]
        if not parent_learned and parent_seconds:
            per_step = parent_seconds / steps
            lines += ["", f"**What budget would.** One in which the parent learns flow first: more than the {steps:,} "
                          f"steps measured here. RAFT's own first stage trains {RAFT_CHAIRS_STEPS:,} steps (FlyingChairs, "
                          f"batch 10; a published schedule, not measured here): at the {per_step:.2f} s per step "
                          f"measured for this quarter-width parent, about {RAFT_CHAIRS_STEPS * per_step / 3600:.0f} "
                          f"hours for the parent alone on one core, before children trained long enough to beat zero "
                          f"flow, 20 seeds of every row. That is a GPU's budget, not 2 CPU cores'."]
    return "\n".join(lines).rstrip() + "\n"


def _row_cost_ratios(data: dict[str, Any]) -> tuple[dict[str, float], str]:
    """Each row's median training time relative to KD's, measured on the segmentation pair (else 1)."""
    entry = data["pairs"].get(plan.SEG_PAIR)
    if not entry or "kd" not in entry["methods"]:
        return {}, "1 (no row of the segmentation pair measured yet)"
    kd = statistics.median(t for t in entry["methods"]["kd"]["train_seconds"] if t is not None)
    ratios = {row: statistics.median(t for t in m["train_seconds"] if t is not None) / kd
              for row, m in entry["methods"].items() if any(t is not None for t in m.get("train_seconds", []))}
    return ratios, ("the ratio of its median time to KD's on the segmentation pair (" + ", ".join(
        f"`{row}` {ratios[row]:.1f}" for row in FLOW_ROWS if row in ratios and row not in ("baseline", "kd")) + ")")


def _flow_runs() -> dict[str, int]:
    """Distinct runs per row of :data:`FLOW_ROWS`: 20 seeds each, plus the searched methods' other
    configurations on the tuning seeds (the chosen one's are seeds 0-2 of the comparison)."""
    searched = {"baseline", "kd", "hkt", "hkt-kd", "fitnet", "fitnet-kd"}
    return {row: 20 + ((plan.CONFIGS - 1) * len(plan.TUNE_SEEDS) if row in searched else 0) for row in FLOW_ROWS}


def _put(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with the block between ``begin`` and ``end`` replaced by ``body`` (appended when absent)."""
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"


def render(doc_text: str, data: dict[str, Any]) -> str:
    text = _put(doc_text, BEGIN, END, section(data))
    if SEG_BEGIN in text:  # the Segmentation and Optical flow sections hold their generated blocks
        text = _put(text, SEG_BEGIN, SEG_END, seg_section(data))
    if FLOW_BEGIN in text:
        text = _put(text, FLOW_BEGIN, FLOW_END, flow_section(data))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/RESULTS.md differs from the JSON's")
    parser.add_argument("--json", default=str(plan.RESULTS_FILE), help="results file (default docs/results/quality.json)")
    parser.add_argument("--no-plot", action="store_true", help=f"do not redraw {FIGURE.relative_to(plan.ROOT)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: render from the JSON and compare with docs/RESULTS.md (--check --no-plot)")
    args = parser.parse_args(argv)
    if args.quick:
        args.check = args.no_plot = True
    data = json.loads(Path(args.json).read_text())
    text = DOC.read_text()
    new = render(text, data)
    if args.check:
        if new != text:
            print("docs/RESULTS.md is out of date: run python benchmarks/quality_report.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    if not args.no_plot:
        plot(data, FIGURE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
