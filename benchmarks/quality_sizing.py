"""Sizing a pair: is there a size at which KD, the pair's positive control, beats the baseline, and
what does one run cost? The child's width and its number of training samples are varied around the
card's; at each size the baseline (the pair's chosen recipe, else the card's) and KD (each of the
benchmark's KD settings) are trained on a few seeds and compared on validation scores only (the
task's primary metric: accuracy, Dice). Each run's training time is recorded, so the budget of 20
seeds of every row can be stated before any is run.

    python benchmarks/quality_sizing.py                                        # the transformer pair
    python benchmarks/quality_sizing.py --pair seg-scarce-denseunet-pocketnet  # the segmentation pair
    python benchmarks/quality_sizing.py --quick                                # smoke check: tiny data, 2 epochs, a temporary folder

Results go to ``docs/results/quality_sizing.json`` (one entry per pair, merged into the file; read by
quality_report.py). The parent is the quality benchmark's own (``<out>/<pair>/parent-seed0``,
trained there when missing); every run is an ordinary run folder under ``<out>/<pair>/sizing/``,
reused when finished with the same settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_plan as plan

ROOT = plan.ROOT
OUT_FILE = plan.RESULTS_FILE.with_name("quality_sizing.json")
#: per pair, the sizes tried: (child width, child training samples); the card's size first. The
#: transformer pair's training samples are its sequences before the validation split; the segmentation
#: pair's are the images the child learns from (``train.train_samples``, a prefix of the same order),
#: its 32 validation images the same at every size, and its epochs scaled so that every size takes the
#: card's number of optimisation steps
REGIMES: dict[str, list[tuple[int, int]]] = {
    plan.TRANSFORMER_PAIR: [(16, 1000), (32, 1000), (16, 3000), (32, 3000)],
    plan.SEG_PAIR: [(4, 64), (8, 64), (4, 32), (8, 32), (4, 16), (8, 16)],
    plan.FLOW_SIZING_PAIR: [(0, 64)],  # width 0: the card's child (RAFT-S at a quarter of the widths)
}
#: pairs sized on some of the KD search only: the flow task's distillation is an L1 to the parent's flow, so
#: the temperature does nothing and T4-w0.9 and T2-w0.9 are the same run; the card's weight is kept
KD_SUBSET: dict[str, tuple[str, ...]] = {plan.FLOW_SIZING_PAIR: ("T4-w0.9",)}
#: the segmentation pair's optimisation steps at every size (batches of the card's size)
SEG_STEPS = 240
#: per pair, the seeds of every run (validation scores are compared on their mean and paired per seed)
SEEDS: dict[str, tuple[int, ...]] = {plan.TRANSFORMER_PAIR: (0, 1), plan.SEG_PAIR: (0, 1, 2),
                                     plan.FLOW_SIZING_PAIR: (0, 1)}


def _card(pair: str, width: int, n_train: int, quick: bool):
    import attrs

    import quality

    card = quality.resolve_card(pair, quick)
    options = dict(card.child_options)
    if "config" in options:  # a transformers configuration (the zoo's pair)
        config = {**options["config"], "hidden_size": width, "intermediate_size": 2 * width}
        return attrs.evolve(card, child_options={**options, "config": config},
                            dataset_options={**card.dataset_options, "n_train": 240 if quick else n_train})
    if pair == plan.SEG_PAIR and n_train and not quick:  # as many optimisation steps at every size
        epochs = SEG_STEPS * card.train.batch_size // n_train
        card = attrs.evolve(card, train=attrs.evolve(card.train, epochs=epochs))
    return attrs.evolve(card, child_options={**options, "width": width}) if width else card


def _train_samples(pair: str, n_train: int, quick: bool) -> dict[str, int]:
    """The run's ``train.train_samples`` for a pair whose size is a subset of its training split."""
    if pair == plan.TRANSFORMER_PAIR:
        return {}
    return {"train_samples": 8 if quick else n_train}


def zero_flow(pair: str, quick: bool, parent: bool = False) -> float:
    """The validation EPE of predicting no motion at all (the floor a flow network must beat), on the
    children's validation split or (``parent``) on the parent's own."""
    import attrs

    from hkt_core.plugins import default_manager
    from hkt_core.tasks.metrics import EndPointError
    from hkt_core.train.loop.data import load_splits

    card = _card(pair, 0, 0, quick)
    train = attrs.evolve(card.train, **card.parent_train) if parent else card.train
    splits = load_splits(card, train, default_manager(), parent=parent)
    metric, total = EndPointError(), 0
    for i in range(len(splits.val)):
        _, (flow, valid) = splits.val[i]
        total = total + metric.stats(torch_zeros_like(flow)[None], (flow[None], valid[None]))
    return float(metric.compute(total))


def torch_zeros_like(tensor):
    import torch

    return torch.zeros_like(tensor)


def run_one(spec: dict[str, Any], out: str, quick: bool) -> dict[str, Any]:
    import torch

    import hkt_core
    import quality
    from hkt_core.train.setup.reuse import train_or_reuse

    torch.set_num_threads(1)
    card = _card(spec["pair"], spec["width"], spec["n_train"], quick)
    kwargs = {**spec["recipe"], **spec["train"], **_train_samples(spec["pair"], spec["n_train"], quick)}
    if spec["method"] == "kd":
        kwargs["parent_weights"] = spec["parent"]
    folder = Path(out) / spec["pair"] / "sizing" / spec["folder"]
    started = time.time()
    train_or_reuse(card, spec["method"], folder, say=lambda m: None, seed=spec["seed"], progress=False, **kwargs)
    summary = hkt_core.load_run(folder).summary
    metric = summary.get("primary_metric", "accuracy")
    return {**spec, "metric": metric, "val": quality.scale(metric) * summary["val"][metric],
            "train_seconds": summary["train_seconds"], "best_epoch": summary["best_epoch"],
            "epochs": summary["epochs"], "wall": time.time() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default=plan.TRANSFORMER_PAIR, choices=sorted(REGIMES),
                        help=f"the pair (default {plan.TRANSFORMER_PAIR})")
    parser.add_argument("--workers", type=int, default=2, help="parallel training processes (default 2)")
    parser.add_argument("--out", default=None, help="run folders (default runs/quality; --quick: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny data, 2 epochs, 2 sizes, 1 seed")
    args = parser.parse_args(argv)
    import quality

    out = Path(args.out or (tempfile.mkdtemp(prefix="hkt-sizing-quick-") if args.quick else ROOT / "runs" / "quality"))
    tuned = quality.read_tuned()
    has_recipe = "baseline" in tuned.get("pairs", {}).get(args.pair, {}).get("chosen", {})
    # the baseline's chosen recipe; before the pair's search, the card's own settings
    recipe = quality.recipe_of(tuned, args.pair, "kd") if has_recipe and not args.quick else {}
    kd_space = plan.search_for(args.pair)["kd"]  # the pair's own KD search where it has one
    kd_space = {k: v for k, v in kd_space.items() if k in KD_SUBSET.get(args.pair, kd_space)}
    kd_settings = dict(list(kd_space.items())[:1] if args.quick else kd_space.items())
    parent = quality.execute([quality.job(args.pair, "parent", "card", {}, 0, {})], out, args.quick, 1, print)[0]
    if "error" in parent:
        print(parent["trace"], file=sys.stderr)
        return 1
    parent_file = str(out / args.pair / "parent-seed0" / "child.safetensors")
    seeds = SEEDS[args.pair][:1] if args.quick else SEEDS[args.pair]
    regimes_tried = REGIMES[args.pair][:2] if args.quick else REGIMES[args.pair]
    specs = []
    for width, n_train in regimes_tried:
        for seed in seeds:
            runs = [("baseline", "recipe", {})] + [("kd", name, cfg.get("train", {})) for name, cfg in kd_settings.items()]
            for method, name, train in runs:
                specs.append({"pair": args.pair, "width": width, "n_train": n_train, "method": method, "config": name,
                              "train": train, "recipe": recipe, "seed": seed, "parent": parent_file,
                              "folder": f"w{width}-n{n_train}-{method}-{name}-seed{seed}"})
    results = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_one, spec, str(out), args.quick) for spec in specs]
        for future in as_completed(futures):
            r = future.result()
            results.append(r)
            print(f"[{len(results)}/{len(specs)}] width {r['width']} n_train {r['n_train']} {r['method']} "
                  f"{r['config']} seed {r['seed']}: val {r['val']:.2f} ({r['train_seconds']:.0f} s training, "
                  f"best epoch {r['best_epoch']}/{r['epochs']})", flush=True)
    regimes = []
    for width, n_train in dict.fromkeys((s["width"], s["n_train"]) for s in specs):
        mine = sorted((r for r in results if (r["width"], r["n_train"]) == (width, n_train)), key=lambda r: r["seed"])
        regimes.append({"width": width, "n_train": n_train, "epochs": mine[0]["epochs"] if mine else None,
                        "baseline": [r["val"] for r in mine if r["method"] == "baseline"],
                        "kd": {k: [r["val"] for r in mine if r["method"] == "kd" and r["config"] == k]
                               for k in kd_settings},
                        "train_seconds": {"baseline": [r["train_seconds"] for r in mine if r["method"] == "baseline"],
                                          "kd": [r["train_seconds"] for r in mine if r["method"] == "kd"]},
                        "best_epoch": {"baseline": [r["best_epoch"] for r in mine if r["method"] == "baseline"],
                                       "kd": [r["best_epoch"] for r in mine if r["method"] == "kd"]}})
    command = "python benchmarks/quality_sizing.py " + " ".join(argv if argv is not None else sys.argv[1:])
    metric = results[0]["metric"] if results else "accuracy"
    entry = {"seeds": list(seeds), "recipe": recipe, "recipe_source": "chosen" if recipe else "card",
             "kd_settings": {k: v.get("train", {}) for k, v in kd_settings.items()},
             "parent_sha256": parent["parent_sha256"], "parent_train_seconds": parent.get("train_seconds"),
             "metric": metric,
             "regimes": regimes, "command": command.strip(), "workers": args.workers}
    if metric == "epe":
        entry["zero_flow_val"] = zero_flow(args.pair, args.quick)
        entry["parent_val"] = parent["val"]  # on the parent's own validation split, beside its zero flow
        entry["parent_zero_flow_val"] = zero_flow(args.pair, args.quick, parent=True)
        records = (out / args.pair / "parent-seed0" / "metrics.jsonl").read_text().splitlines()
        entry["parent_steps"] = json.loads(records[-1])["step"]  # optimisation steps the parent trained
    if args.quick:
        print(json.dumps({"pairs": {args.pair: entry}}))
        return 0
    data = json.loads(OUT_FILE.read_text()) if OUT_FILE.is_file() else {"pairs": {}}
    data["pairs"][args.pair] = entry  # the other pairs' sizing stays
    OUT_FILE.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT_FILE}; regenerate docs/RESULTS.md with benchmarks/quality_report.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
