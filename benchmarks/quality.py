"""Quality benchmark: does inheritance pay? Baseline vs KD vs HKT variants, in the paper's regime.

Pairs: :data:`quality_plan.PAIRS` (cards of the plugins). The main pair,
``mnist1d-resnet56-resnet20``, is a residual family at a 12x parameter ratio on MNIST-1D whose
parent was trained on a larger sample (its card's ``[parent_dataset_options]``) than the children
see: the positive control, where distillation is known to pay.

Steps (each run is an ordinary run folder ``<out>/<pair>/<method>-<config>-seed<S>``, reused
when finished with the same settings, so a stopped benchmark continues where it was):

    python benchmarks/quality.py --tune --methods baseline   # 1. the shared recipe, on the baseline
    python benchmarks/quality.py --tune                      # 2. every other method's search
    python benchmarks/quality.py                             # 3. the comparison -> docs/results/quality.json
    python benchmarks/quality_report.py                      # 4. docs/RESULTS.md from that JSON
    python benchmarks/quality.py --quick                     # smoke check: 1 seed, 2 epochs, small data, temp folder

``--tune`` runs every configuration of the search (:data:`quality_plan.SEARCH`, the same number
per method) on the tuning seeds, picks each method's best mean validation accuracy and writes it
to ``benchmarks/quality_tuned.json`` (committed; the comparison reads it). Each pair's parent is
trained once (``parent-seed0``) and every child loads those weights; its SHA-256 is recorded.
Jobs run in ``--workers`` processes with one intra-op thread each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_plan as plan

ROOT = plan.ROOT


# -- jobs ----------------------------------------------------------------------------------------

def job(pair: str, row: str, config_name: str, config: dict[str, Any], seed: int, recipe: dict[str, Any]) -> dict:
    """One run: ``row`` (the reported method name) trained with ``config`` on top of ``recipe``."""
    method = plan.METHOD_OF_ROW.get(row, row)
    train = {**recipe, **config.get("train", {})}
    return {"pair": pair, "row": row, "method": method, "config": config_name, "seed": seed,
            "train": train, "hkt": dict(config.get("hkt", {})),
            "method_options": dict(config.get("method_options", {})),
            "stages": config.get("card", {}).get("stages"),
            "folder": "parent-seed0" if method == "parent" else f"{method}-{config_name}-seed{seed}"}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def resolve_card(name: str, quick: bool):
    """The registered card, shrunk in ``--quick`` mode (2 epochs, small data)."""
    import attrs
    from hkt_core.plugins import default_manager

    card = default_manager().lookup("pairs", name)
    if not quick:
        return card
    small = {"mnist1d": {"num_samples": 1200, "train_split": 0.5},
             "token-recall": {"n_train": 200, "n_test": 200},
             "seg-synthetic": {"n_train": 24, "n_test": 16},
             "flow-synthetic": {"train_size": 12, "test_size": 4}}.get(card.dataset, {})
    parent_small = {"mnist1d": {"num_samples": 1200}, "token-recall": {"n_train": 400},
                    "seg-synthetic": {"n_train": 48, "n_test": 16},
                    "flow-synthetic": {"train_size": 16, "test_size": 4}}.get(card.dataset, {})
    parent_small = parent_small if card.parent_dataset_options else {}
    return attrs.evolve(card, train=attrs.evolve(card.train, epochs=2),
                        dataset_options={**card.dataset_options, **small},
                        parent_dataset_options={**card.parent_dataset_options, **parent_small},
                        parent_train={**card.parent_train, "epochs": 2})


def _parent_matches(folder: Path, spec) -> bool:
    """Whether ``folder`` holds a finished parent trained as ``spec`` asks: same training settings and
    the same data (its own options over the children's). The children's settings elsewhere in the
    card do not change a parent."""
    from hkt_core.config import read_toml
    from hkt_core.train.setup.reuse import config_differences

    stored, wanted = read_toml(folder / "config.toml"), spec.config()

    def data(config):
        card = config.get("card", {})
        return {**card.get("dataset_options", {}), **card.get("parent_dataset_options", {})}

    diffs = config_differences({k: stored.get(k) for k in ("train", "method") if k in stored},
                               {k: wanted[k] for k in ("train", "method")})
    return not diffs and json.dumps(data(stored), sort_keys=True) == json.dumps(data(wanted), sort_keys=True)


def run_job(spec: dict[str, Any], out: str, quick: bool) -> dict[str, Any]:
    """Train (or reuse) one run; returns its numbers, or the error."""
    import attrs

    import hkt_core
    from hkt_core.train.setup.api import resolve
    from hkt_core.train.setup.reuse import train_or_reuse
    from hkt_core.train.setup.training import Trainer

    base = Path(out) / spec["pair"]
    folder = base / spec["folder"]
    started = time.time()
    try:
        card = resolve_card(spec["pair"], quick)
        kwargs: dict[str, Any] = {"hkt": spec["hkt"], "method_options": spec["method_options"], **spec["train"]}
        if spec.get("stages") is not None:  # the card's stages (fixed [alignment] pairs are then dropped)
            kwargs["stages"] = spec["stages"]
        parent_file = base / "parent-seed0" / "child.safetensors"
        if spec["method"] == "parent":
            run_spec = resolve(card, "parent", seed=spec["seed"], out=folder, progress=False, **kwargs)
            reused = (folder / "summary.json").is_file()
            if reused and not _parent_matches(folder, run_spec):
                raise RuntimeError(f"{folder} holds a parent trained with other settings than the card's; every "
                                   f"child of this pair inherits from it, so it is not replaced silently: move it "
                                   f"away to train the new parent")
            if not reused:
                Trainer(attrs.evolve(run_spec, force=folder.exists())).fit()
        else:
            if hkt_core.lookup("methods", spec["method"]).needs_parent:
                kwargs["parent_weights"] = str(parent_file)
            _, reused = train_or_reuse(card, spec["method"], folder, say=lambda m: None, seed=spec["seed"],
                                       progress=False, **kwargs)
        run = hkt_core.load_run(folder)
        s = run.summary
        alignment = [{k: p[k] for k in ("parent", "child", "parent_kind", "child_kind") if k in p}
                     for p in run.alignment.to_dict()["pairs"]] if run.alignment is not None else None
        metric = s.get("primary_metric", "accuracy")  # the task's (accuracy, Dice, EPE ...)
        return {**spec, "alignment": alignment, "metric": metric, "higher_is_better": s.get("higher_is_better", True),
                "val": s["val"][metric], "test": s["test"][metric], "parameters": s["parameters"],
                "train_seconds": s["train_seconds"], "epochs": s["epochs"], "best_epoch": s["best_epoch"],
                "parent_sha256": _digest(parent_file if spec["method"] != "parent" else folder / "child.safetensors"),
                "wall": time.time() - started, "reused": reused}
    except Exception as exc:  # one failing run must not stop the benchmark; it is reported
        from hkt_core.errors import TrainingDiverged

        return {**spec, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=4),
                "diverged": isinstance(exc, TrainingDiverged)}


def _digest(weights: Path) -> str | None:
    """The SHA-256 of the parent's tensors, None before the parent exists (the baseline's search)."""
    from hkt_core.train.folders.parents import weights_sha256

    return weights_sha256(weights) if weights.is_file() else None


def execute(jobs: list[dict[str, Any]], out: Path, quick: bool, workers: int, log) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if workers <= 1 or len(jobs) <= 1:
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
    head = f"[{i}/{n}] {r['pair']} {r['row']:16s} {r['config']:22s} seed {r['seed']}"
    if "error" in r:
        return f"{head}  FAILED {r['error']}"
    k = scale(r.get("metric"))
    return (f"{head}  val {k * r['val']:.2f}  test {k * r['test']:.2f}  {r['train_seconds']:.0f}s train"
            f"{' (reused)' if r['reused'] else ''}")


# -- tuning --------------------------------------------------------------------------------------

def read_tuned() -> dict[str, Any]:
    return json.loads(plan.TUNED_FILE.read_text()) if plan.TUNED_FILE.is_file() else {"pairs": {}}


def recipe_of(tuned: dict[str, Any], pair: str, row: str) -> dict[str, Any]:
    """The ``train`` settings ``row``'s configurations start from: none for the baseline (its search
    is the recipe's); else the shared recipe of ``pair`` (the baseline's chosen ``train``
    settings), with the chosen ``train`` settings of the method the row is built on
    (:data:`quality_plan.BUILT_ON`)."""
    if row == "baseline":
        return {}
    chosen = tuned.get("pairs", {}).get(pair, {}).get("chosen", {})
    if "baseline" not in chosen:
        raise SystemExit(f"no tuned recipe for {pair}: run `python benchmarks/quality.py --tune --methods baseline` first")
    recipe = dict(chosen["baseline"]["config"].get("train", {}))
    source = plan.BUILT_ON.get(row)
    if source is not None:
        if source not in chosen:
            raise SystemExit(f"{pair}: {row} is built on {source}'s chosen settings; tune {source} first "
                             f"(`python benchmarks/quality.py --tune --methods {source}`)")
        recipe.update(chosen[source]["config"].get("train", {}))
    return recipe


def tune_phases(methods: list[str]) -> list[list[str]]:
    """The order of the search: the baseline (the shared recipe) first, then the methods trained on
    that recipe, then those built on another method's choice (:data:`quality_plan.BUILT_ON`)."""
    phases = [[m for m in methods if m == "baseline"],
              [m for m in methods if m != "baseline" and m not in plan.BUILT_ON],
              [m for m in methods if m in plan.BUILT_ON]]
    return [phase for phase in phases if phase]


def tune_jobs(pairs: list[str], methods: list[str], seeds: list[int], tuned: dict[str, Any]) -> list[dict]:
    jobs = []
    for pair in pairs:
        space = plan.search_for(pair)
        for method in (m for m in methods if m in plan.searched_methods(pair)):  # a pair's own rows only
            recipe = recipe_of(tuned, pair, method)
            for seed in seeds:
                for name, config in space[method].items():
                    jobs.append(job(pair, method, name, config, seed, recipe))
    return jobs


#: rows whose runs use no parent (they stay when the pair's parent is trained anew)
PARENT_FREE_ROWS = ("baseline",)

#: what a record keeps per seed of a run (fractions such as accuracy and Dice in %, others as measured)
RECORDED = ("val", "test", "train_seconds")
#: primary metrics that are fractions, recorded in % (every other one, an EPE in pixels say, as measured)
PERCENT_METRICS = ("accuracy", "dice", "dice_all", "iou", "macro_f1")


def scale(metric: str | None) -> float:
    """The factor a run's primary metric is recorded with: 100 for a fraction (% in the results),
    else 1. ``None`` (results written before the metric was recorded) is accuracy."""
    return 100.0 if (metric or "accuracy") in PERCENT_METRICS else 1.0


def put_seed(record: dict[str, Any], result: dict[str, Any]) -> None:
    """Enter one run's numbers in ``record`` (``{"seeds": [...], "val": [...], ...}``), replacing
    what it held for that seed; lists of a record written before ``train_seconds`` are padded."""
    k = scale(result.get("metric"))
    values = {"val": k * result["val"], "test": k * result["test"], "train_seconds": result["train_seconds"]}
    for k in RECORDED:
        record.setdefault(k, [None] * len(record["seeds"]))
    if result["seed"] not in record["seeds"]:
        record["seeds"].append(result["seed"])
        for k in RECORDED:
            record[k].append(None)
    i = record["seeds"].index(result["seed"])
    for k, v in values.items():
        record[k][i] = v


def choose(results: list[dict[str, Any]], tuned: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Each method's configuration with the best mean validation score (the task's primary metric:
    the highest accuracy or Dice, the lowest EPE) over the tuning seeds (ties: the first listed);
    records every configuration's numbers for the report."""
    out = json.loads(json.dumps(tuned))
    for r in results:
        if "error" in r and not r.get("diverged"):
            continue
        entry = out["pairs"].setdefault(r["pair"], {"seeds": seeds, "search": {}, "chosen": {}})
        if sorted(entry.get("seeds", [])) != sorted(seeds):  # a search on other seeds: start it anew
            entry.update({"seeds": seeds, "search": {}, "chosen": {}})
        if r.get("metric", "accuracy") != "accuracy":  # written only where it is not the default
            entry.update({"metric": r["metric"], "higher_is_better": r["higher_is_better"]})
        cfg = entry["search"].setdefault(r["row"], {}).setdefault(r["config"], {"seeds": [], "val": [], "test": []})
        if r.get("diverged"):  # a result: this configuration diverged on that seed, and is not chosen
            cfg["diverged_seeds"] = sorted({*cfg.get("diverged_seeds", []), r["seed"]})
        else:
            put_seed(cfg, r)
            if r["seed"] in cfg.get("diverged_seeds", []):
                cfg["diverged_seeds"].remove(r["seed"])
                if not cfg["diverged_seeds"]:
                    del cfg["diverged_seeds"]
    for pair, entry in out["pairs"].items():
        space = plan.search_for(pair)
        for method, configs in entry["search"].items():
            settled = {n: c for n, c in configs.items() if n in space.get(method, {})
                       and sorted({*c["seeds"], *c.get("diverged_seeds", [])}) == sorted(entry["seeds"])}
            complete = {n: c for n, c in settled.items() if not c.get("diverged_seeds")}
            if method not in space or len(settled) < len(space[method]) or not complete:
                continue  # not every configuration of today's search finished (or every one diverged): no choice
            sign = 1 if entry.get("higher_is_better", True) else -1
            best = max(complete, key=lambda n: (sign * sum(complete[n]["val"]) / len(complete[n]["val"]),
                                                -list(space[method]).index(n)))
            entry["chosen"][method] = {"name": best, "config": space[method][best],
                                       "val_mean": sum(complete[best]["val"]) / len(complete[best]["val"])}
    return out


# -- the comparison ------------------------------------------------------------------------------

def final_jobs(pairs: list[str], tuned: dict[str, Any], seeds: list[int], variant_seeds: list[int],
               rows: list[str] | None) -> list[dict]:
    jobs = []
    for pair in pairs:
        entry = tuned.get("pairs", {}).get(pair, {})
        chosen = entry.get("chosen", {})
        skipped = plan.NOT_RUN.get(pair, {})  # rows the pair leaves out (the report says why)
        stage_rows = [r for r in plan.STAGE_ROWS if pair in plan.STAGE_PAIRS and r not in skipped]
        main_rows = plan.main_methods(pair)
        if rows is None:
            needed = list(main_rows)
        else:
            needed = [m for m in plan.searched_for([r for r in rows if r not in plan.STAGE_ROWS or r in stage_rows])
                      if m in plan.searched_methods(pair)]
        missing = sorted({m for m in needed if m not in chosen})
        if missing:
            raise SystemExit(f"{pair}: no tuned configuration for {', '.join(missing)}; run --tune first")
        wanted: list[tuple[str, str, dict, list[int]]] = [
            (m, chosen[m]["name"], chosen[m]["config"], seeds) for m in main_rows if m in chosen]
        if "hkt" in chosen and "hkt" in main_rows:
            wanted += [(row, name, config, variant_seeds)
                       for row, (name, config) in plan.variants(chosen["hkt"]["config"]).items()]
        if stage_rows:  # rows None: those whose sources are chosen (the multi-stage rows are optional)
            wanted += [(row, name, config, variant_seeds)
                       for row, (name, config) in plan.stage_rows(chosen, pair).items() if row in stage_rows]
        for seed in sorted(set(seeds) | set(variant_seeds)):  # seed-major: a stopped run keeps whole seeds
            for row, name, config, row_seeds in wanted:
                if seed in row_seeds and (rows is None or row in rows):
                    jobs.append(job(pair, row, name, config, seed, recipe_of(tuned, pair, row)))
    return jobs


def results_json(results: list[dict[str, Any]], parents: dict[str, dict], tuned: dict[str, Any],
                 previous: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any]:
    """``{"pairs": {PAIR: {parent_params, child_params, test_size, parent_sha256, methods: {ROW:
    {seeds, test, val}}}}}`` (the task's primary metric: accuracy or Dice in %, ``metric`` and
    ``higher_is_better`` written where it is not accuracy), merged into ``previous`` run by run."""
    data = json.loads(json.dumps(previous)) if previous else {"pairs": {}}
    for r in sorted((r for r in results if "error" not in r), key=lambda r: (r["pair"], r["row"], r["seed"])):
        p = parents[r["pair"]]
        entry = data["pairs"].setdefault(r["pair"], {})
        if entry.get("parent_sha256") not in (None, p["parent_sha256"]):
            # another parent: the runs that inherited from the old one do not belong to this comparison
            # (kept aside, and named in the report); the baseline never saw a parent and stays
            kept = {row: m for row, m in entry.get("methods", {}).items() if row in PARENT_FREE_ROWS}
            entry["earlier_parent"] = {"parent_sha256": entry["parent_sha256"], "parent_test": entry.get("parent_test"),
                                       "methods": {row: m for row, m in entry.get("methods", {}).items()
                                                   if row not in kept}}
            entry["methods"] = kept
        entry.pop("train_seconds", None)  # written per pair by an earlier version; now per run
        entry.update({"parent_params": p["parameters"], "child_params": p["child_params"],
                      "test_size": p["test_size"], "parent_sha256": p["parent_sha256"],
                      "parent_test": scale(p.get("metric")) * p["test"], "parent_train_seconds": p.get("train_seconds"),
                      "card": r["pair"]})
        if p.get("metric", "accuracy") != "accuracy":
            entry.update({"metric": p["metric"], "higher_is_better": p["higher_is_better"]})
        entry.update({k: p.get(k) for k in ("parent_model", "child_model", "parent_architecture", "child_architecture")})
        if r["row"] == "hkt" and r.get("alignment"):
            entry["alignment"] = r["alignment"]  # the mixing points HKT used, with their representation kinds
        row = entry.setdefault("methods", {}).setdefault(r["row"], {"seeds": [], "test": [], "val": []})
        row["config"] = r["config"]
        put_seed(row, r)
        if r.get("alignment"):  # the mixing (or hint) points of the run; a random control's vary by seed
            by_seed = row.setdefault("alignments", {})
            by_seed[str(r["seed"])] = r["alignment"]
        order = sorted(range(len(row["seeds"])), key=row["seeds"].__getitem__)
        for k in ("seeds", *RECORDED):
            row[k] = [row[k][i] for i in order]
    for r in sorted((r for r in results if r.get("diverged")), key=lambda r: (r["pair"], r["row"], r["seed"])):
        if r["pair"] in data["pairs"]:  # a row that diverged is a result: recorded, with the seeds it diverged on
            gone = data["pairs"][r["pair"]].setdefault("diverged", {}).setdefault(
                r["row"], {"config": r["config"], "seeds": [], "error": r["error"]})
            gone["seeds"] = sorted({*gone["seeds"], r["seed"]})
    for entry in data["pairs"].values():
        for name, gone in list(entry.get("diverged", {}).items()):  # seeds trained since are no longer diverged
            gone["seeds"] = [s for s in gone["seeds"] if s not in entry.get("methods", {}).get(name, {}).get("seeds", [])]
            if not gone["seeds"]:
                del entry["diverged"][name]
        if "diverged" in entry and not entry["diverged"]:
            del entry["diverged"]
        for row in entry.get("methods", {}).values():
            by_seed = row.pop("alignments", None)
            if by_seed:
                ordered = {k: by_seed[k] for k in sorted(by_seed, key=int)}
                row["alignment"] = next(iter(ordered.values()))
                if any(a != row["alignment"] for a in ordered.values()):
                    row["alignments"] = ordered
    for pair in data["pairs"]:
        if pair in tuned.get("pairs", {}):
            data["pairs"][pair]["tuning"] = tuned["pairs"][pair]
    earlier = (previous or {}).get("meta", {}) if previous else {}
    history = list(earlier.get("commands") or ([earlier["command"]] if earlier.get("command") else []))
    data["meta"] = {**meta, "commands": [*history, meta["command"]]}  # every command that wrote the file, in turn
    return data


def parent_info(parent_result: dict[str, Any], quick: bool) -> dict[str, Any]:
    from hkt_core.models import build_model, count_parameters
    from hkt_core.plugins import default_manager
    from hkt_core.train.loop.data import load_splits

    card = resolve_card(parent_result["pair"], quick)
    manager = default_manager()
    child = build_model(card.child, manager, **card.child_options)
    splits = load_splits(card, card.train, manager)
    return {**parent_result, "child_params": count_parameters(child), "test_size": len(splits.test),
            "parent_model": card.parent, "child_model": card.child,
            "parent_architecture": _architecture(card.parent_options), "child_architecture": _architecture(card.child_options)}


def _architecture(options: dict[str, Any]) -> str | None:
    """What a zoo source builds (a transformers ``architecture`` with its depth and width, a
    torchvision/timm ``name``), None for a model of the pair's own plugin."""
    if "architecture" in options:
        config = options.get("config", {})
        layers = config.get("num_hidden_layers", config.get("n_layer"))
        width = config.get("hidden_size", config.get("n_embd"))
        return options["architecture"] + (f", {layers} layers of width {width}" if layers and width else "")
    return options.get("name")


# -- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tune", action="store_true", help="the validation search; writes benchmarks/quality_tuned.json")
    parser.add_argument("--methods", default=None,
                        help="--tune: comma-separated methods (default: all but the baseline; the baseline first "
                             "alone); the comparison: rows to run (default all)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the four main rows (default 20)")
    parser.add_argument("--variant-seeds", type=int, default=20, help="seeds of the further HKT variants (default 20)")
    parser.add_argument("--pairs", default=",".join(plan.PAIRS), help="comma-separated pair cards (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="parallel training processes (default 2)")
    parser.add_argument("--out", default=None, help="run folders (default runs/quality; --quick: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 seed, 2 epochs, small data")
    parser.add_argument("--no-write", action="store_true", help="write neither the tuned file nor docs/results")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: write docs/results/quality.json from the finished runs (with "
                             "--methods: those rows' finished runs, merged into the file)")
    args = parser.parse_args(argv)

    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    unknown = [p for p in pairs if p not in plan.PAIRS]
    if unknown:
        parser.error(f"unknown pair(s) {', '.join(unknown)}; listed: {', '.join(plan.PAIRS)}")
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    if args.quick and args.out is None:   # a smoke check writes nothing outside a temporary folder
        import tempfile

        args.out = tempfile.mkdtemp(prefix="hkt-quality-quick-")
    out = Path(args.out or ROOT / "runs" / "quality")
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    started = time.time()
    baseline_only = args.tune and methods == ["baseline"]  # the recipe's search needs no parent
    parent_jobs = [] if baseline_only else [job(p, "parent", "card", {}, 0, {}) for p in pairs]
    parents = execute(parent_jobs, out, args.quick, args.workers, log)
    if any("error" in r for r in parents):
        for r in parents:
            log(r.get("trace", ""))
        return 1
    tuned = read_tuned() if not args.quick else {"pairs": {}}
    if args.tune or args.quick:
        seeds = list(plan.TUNE_SEEDS[:1] if args.quick else plan.TUNE_SEEDS)
        if args.quick:  # what the asked rows need: their searched methods and what those are built on
            wanted = plan.searched_for(methods) if methods else list(plan.MAIN_METHODS)
        else:
            wanted = methods or [m for m in plan.MAIN_METHODS if m != "baseline"]
            unsearched = [m for m in wanted if m not in plan.SEARCH]
            if unsearched:
                parser.error(f"--tune searches methods, not rows built on a choice: {', '.join(unsearched)}; "
                             f"searched: {', '.join(plan.SEARCH)}")
        results = []
        for phase in tune_phases(wanted):
            results += execute(tune_jobs(pairs, phase, seeds, tuned), out, args.quick, args.workers, log)
            tuned = choose(results, tuned, seeds)
        for r in parents:
            tuned["pairs"].setdefault(r["pair"], {})["parent_sha256"] = r["parent_sha256"]
        if not args.no_write and not args.quick:
            plan.TUNED_FILE.write_text(json.dumps(tuned, indent=1) + "\n")
            log(f"chosen settings written to {plan.TUNED_FILE}")
        if not args.quick:
            return _report_failures(results, log, search=True)
        if _report_failures(results, log, search=True):
            return 1
    seeds = list(range(1 if args.quick else args.seeds))
    variant_seeds = list(range(1 if args.quick else args.variant_seeds))
    jobs = final_jobs(pairs, tuned, seeds, variant_seeds, methods)
    if args.collect:  # the finished runs only
        jobs = [j for j in jobs if (out / j["pair"] / j["folder"] / "summary.json").is_file()]
    results = execute(jobs, out, args.quick, args.workers, log)
    infos = {r["pair"]: parent_info(r, args.quick) for r in parents}
    meta = {"command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "elapsed_seconds": round(time.time() - started, 1), "workers": args.workers,
            "tuned_file": str(plan.TUNED_FILE.relative_to(ROOT))}
    previous = json.loads(plan.RESULTS_FILE.read_text()) if plan.RESULTS_FILE.is_file() else None
    # --collect reads every finished run: the file is written anew rather than merged, unless --methods
    # names the rows to collect (a stopped comparison of some rows: merged into the file like a run)
    fresh = args.quick or (args.collect and methods is None)
    data = results_json(results, infos, tuned, None if fresh else previous, meta)
    if not args.no_write and not args.quick:
        plan.RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        plan.RESULTS_FILE.write_text(json.dumps(data, indent=1) + "\n")
        log(f"results written to {plan.RESULTS_FILE}; regenerate docs/RESULTS.md with benchmarks/quality_report.py")
    else:
        print(json.dumps({p: {r: m["test"] for r, m in e["methods"].items()} for p, e in data["pairs"].items()}))
    return _report_failures(results, log)


def _report_failures(results: list[dict[str, Any]], log, *, search: bool = False) -> int:
    """Log every failed run; the status is 1 when any failed. In the search, a configuration that
    diverged is a result (it is not chosen), not a failure."""
    diverged = [r for r in results if search and r.get("diverged")]
    for r in diverged:
        log(f"diverged (not chosen): {r['pair']} {r['row']} {r['config']} seed {r['seed']}")
    failures = [r for r in results if "error" in r and r not in diverged]
    for r in failures:
        log(f"FAILED {r['pair']} {r['row']} {r['config']} seed {r['seed']}: {r['error']}\n{r.get('trace', '')}")
    log(f"{len(results)} runs, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
