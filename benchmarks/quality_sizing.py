"""Sizing the transformer pair: is there a size at which KD, the pair's positive control, beats the
baseline? The child's width and its number of training sequences are varied around the card's; at
each size the baseline (the pair's chosen recipe) and KD (each of the benchmark's KD settings) are
trained on a few seeds and compared on validation accuracy only.

    python benchmarks/quality_sizing.py            # -> docs/results/quality_sizing.json (read by quality_report.py)
    python benchmarks/quality_sizing.py --quick    # smoke check: tiny data, 2 epochs, a temporary folder

The parent is the quality benchmark's own (``<out>/<pair>/parent-seed0``, trained there when
missing); every run is an ordinary run folder under ``<out>/<pair>/sizing/``, reused when finished
with the same settings.
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
#: (child width, child training sequences before the validation split): the card's first
REGIMES: list[tuple[int, int]] = [(16, 1000), (32, 1000), (16, 3000), (32, 3000)]
#: the seeds of every run (validation accuracy is compared on their mean)
SEEDS: tuple[int, ...] = (0, 1)


def _card(pair: str, width: int, n_train: int, quick: bool):
    import attrs

    import quality

    card = quality.resolve_card(pair, quick)
    options = dict(card.child_options)
    config = {**options["config"], "hidden_size": width, "intermediate_size": 2 * width}
    return attrs.evolve(card, child_options={**options, "config": config},
                        dataset_options={**card.dataset_options, "n_train": 240 if quick else n_train})


def run_one(spec: dict[str, Any], out: str, quick: bool) -> dict[str, Any]:
    import torch

    import hkt_core
    from hkt_core.train.reuse import train_or_reuse

    torch.set_num_threads(1)
    card = _card(spec["pair"], spec["width"], spec["n_train"], quick)
    kwargs = {**spec["recipe"], **spec["train"]}
    if spec["method"] == "kd":
        kwargs["parent_weights"] = spec["parent"]
    folder = Path(out) / spec["pair"] / "sizing" / spec["folder"]
    started = time.time()
    train_or_reuse(card, spec["method"], folder, say=lambda m: None, seed=spec["seed"], progress=False, **kwargs)
    summary = hkt_core.load_run(folder).summary
    return {**spec, "val": 100 * summary["val"]["accuracy"], "wall": time.time() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default=plan.TRANSFORMER_PAIR, help=f"the pair (default {plan.TRANSFORMER_PAIR})")
    parser.add_argument("--workers", type=int, default=2, help="parallel training processes (default 2)")
    parser.add_argument("--out", default=None, help="run folders (default runs/quality; --quick: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny data, 2 epochs, 2 sizes, 1 seed")
    args = parser.parse_args(argv)
    import quality

    out = Path(args.out or (tempfile.mkdtemp(prefix="hkt-sizing-quick-") if args.quick else ROOT / "runs" / "quality"))
    tuned = quality.read_tuned()
    recipe = {} if args.quick else quality.recipe_of(tuned, args.pair, "kd")   # the baseline's chosen recipe
    kd_settings = dict(list(plan.SEARCH["kd"].items())[:1] if args.quick else plan.SEARCH["kd"].items())
    parent = quality.execute([quality.job(args.pair, "parent", "card", {}, 0, {})], out, args.quick, 1, print)[0]
    if "error" in parent:
        print(parent["trace"], file=sys.stderr)
        return 1
    parent_file = str(out / args.pair / "parent-seed0" / "child.safetensors")
    specs = []
    for width, n_train in (REGIMES[:2] if args.quick else REGIMES):
        for seed in (SEEDS[:1] if args.quick else SEEDS):
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
                  f"{r['config']} seed {r['seed']}: val {r['val']:.2f} ({r['wall']:.0f} s)", flush=True)
    regimes = []
    for width, n_train in dict.fromkeys((s["width"], s["n_train"]) for s in specs):
        mine = sorted((r for r in results if (r["width"], r["n_train"]) == (width, n_train)), key=lambda r: r["seed"])
        regimes.append({"width": width, "n_train": n_train,
                        "baseline": [r["val"] for r in mine if r["method"] == "baseline"],
                        "kd": {k: [r["val"] for r in mine if r["method"] == "kd" and r["config"] == k]
                               for k in kd_settings}})
    data = {"pairs": {args.pair: {"seeds": list(SEEDS[:1] if args.quick else SEEDS), "recipe": recipe,
                                  "kd_settings": {k: v.get("train", {}) for k, v in kd_settings.items()},
                                  "parent_sha256": parent["parent_sha256"], "regimes": regimes}},
            "meta": {"command": "python benchmarks/quality_sizing.py " + " ".join(argv if argv is not None
                                                                                     else sys.argv[1:]),
                     "metric": "validation accuracy %, mean over the seeds"}}
    if args.quick:
        print(json.dumps(data))
        return 0
    OUT_FILE.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT_FILE}; regenerate docs/RESULTS.md with benchmarks/quality_report.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
