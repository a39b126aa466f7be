"""Segmentation benchmark: baseline child, pixel-wise KD, 2HKT and 3HKT on the synthetic set.

The parent (``dense_unet_demo``) is trained once; every child run then loads its weights, so all
methods inherit from the same parent. 3HKT uses the ``seg-demo`` card's alignment (deepest
encoder level, bottleneck, output); 2HKT mixes at the bottleneck only. Each (method, seed) is an
ordinary run folder, reused when finished, so the benchmark can be stopped and started again.

    python benchmarks/seg.py                       # full: 3 seeds, the card's epochs (sized for ~20 min on 2 idle cores)
    python benchmarks/seg.py --reduced             # fewer samples and epochs, labelled as such
    python benchmarks/seg.py --quick               # smoke check in seconds, into a temporary folder

It prints a markdown table (test Dice mean +- std over seeds, per-class Dice, parameters,
latency, parent/child ratio) and writes it with the raw numbers to ``--out``.

This is a demo of the methods on the ``seg-demo`` pair, a few seeds. The measured comparison of the
paper's regime (a parent trained on plentiful data, a child on scarce data, 20 seeds of every row,
paired tests) is the quality benchmark's segmentation pair ``seg-scarce-denseunet-pocketnet``:
``python benchmarks/quality.py --pairs seg-scarce-denseunet-pocketnet`` (docs/RESULTS.md, Segmentation).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from hkt_core.models import build_model, count_parameters
from hkt_core.plugins import default_manager

from demo_runs import (demo_arguments, demo_card, main_exit_code, mean_std, metric_values, parse_demo_arguments,
                       runner, variant_card, write_results)

VARIANTS = (("baseline", "baseline", 3), ("kd", "kd", 3), ("2HKT", "hkt", 2), ("3HKT", "hkt", 3))


def class_dice(model: torch.nn.Module, bundle, task) -> dict[str, float]:
    """Global Dice per class (and the task's metrics) of ``model`` on the test split."""
    named = task.with_classes(bundle.info["num_classes"], bundle.info["class_names"])
    return metric_values(model, torch.utils.data.DataLoader(bundle.test, batch_size=64), named.metrics(),
                         lambda m, images: m(images))


def main(argv: list[str] | None = None) -> int:
    parser = demo_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "runs/bench-seg",
                            "160 training images, 4 child epochs, 6 parent epochs")
    parser.add_argument("--n-train", type=int, default=None, help="synthetic training images (default: the card's)")
    parser.add_argument("--parent-weights", default=None, metavar="FILE",
                        help="a trained seg-demo parent (safetensors) instead of training one; it must have "
                             "been trained on the same synthetic generator (e.g. the cache `hkt train seg-demo` fills)")
    args = parse_demo_arguments(parser, argv, seeds=[0, 1, 2],
                                reduced={"n_train": 160, "epochs": 4, "parent_epochs": 6},
                                quick={"n_train": 20, "epochs": 1, "parent_epochs": 1, "seeds": [0]})

    manager = default_manager()
    card = demo_card(manager, "seg-demo", dataset_options={"n_train": args.n_train}, parent_epochs=args.parent_epochs)
    data_options, parent_train = dict(card.dataset_options), card.parent_train
    epochs = args.epochs or card.train.epochs
    out = Path(args.out)
    task = manager.lookup("tasks", card.task)
    bundle = manager.lookup("datasets", card.dataset)(**data_options)
    started = time.perf_counter()

    run = runner(out, manager)

    if args.parent_weights:
        from hkt_core.train.checkpoint import load_module_state
        from hkt_core.train.trainer import measure_latency

        parent_file = Path(args.parent_weights)
        parent_model = build_model(card.parent, manager, **card.parent_options)
        load_module_state(parent_model, parent_file, what="the seg-demo parent")
        parent_epochs = f"trained elsewhere ({parent_file})"
        parent_latency = measure_latency(parent_model, card.input_shapes, device=torch.device("cpu"),
                                         manager=manager)
    else:
        parent_epochs = parent_train.get("epochs", card.train.epochs)
        parent_run = run("parent", "parent", card, 0, epochs=parent_epochs)
        parent_file = parent_run.path / "child.safetensors"
        parent_model = parent_run.child()
        parent_latency = parent_run.summary["latency_ms_per_sample"]
    rows = [{"method": "parent (dense_unet_demo)", "seeds": [0], **_scores([class_dice(parent_model, bundle, task)]),
             "parameters": count_parameters(parent_model), "latency_ms": parent_latency}]
    results: dict[str, dict[str, list]] = {name: {"scores": [], "latency": [], "params": []} for name, _, _ in VARIANTS}
    for seed in args.seeds:  # seed-major, so an interrupted benchmark has every method for its first seeds
        for name, method, stages in VARIANTS:
            extra = {"parent_weights": parent_file} if method != "baseline" else {}
            r = run(name, method, variant_card(card, stages, "bottleneck"), seed, epochs=epochs, **extra)
            results[name]["scores"].append(class_dice(r.child(), bundle, task))
            results[name]["latency"].append(r.summary["latency_ms_per_sample"])
            results[name]["params"].append(r.summary["parameters"])
    for name, _, _ in VARIANTS:
        got = results[name]
        rows.append({"method": f"{name} (pocketnet_demo)", "seeds": list(args.seeds), **_scores(got["scores"]),
                     "parameters": got["params"][0], "latency_ms": statistics.fmean(got["latency"])})
    elapsed = time.perf_counter() - started

    child_params = rows[1]["parameters"]
    config = (f"pair seg-demo, synthetic {data_options.get('size')}x{data_options.get('size')}, "
              f"{data_options.get('n_train')} train / {data_options.get('n_test')} test images, "
              f"{len(bundle.info['class_names'])} classes; parent epochs: {parent_epochs}; children {epochs} epochs, "
              f"seeds {args.seeds}; {'REDUCED configuration; ' if args.reduced else ''}"
              f"wall time {elapsed / 60:.1f} min, torch threads {torch.get_num_threads()}")
    names = bundle.info["class_names"][1:]
    header = ("| method | Dice % (mean +- std) | IoU % | " + " | ".join(f"Dice {n} %" for n in names)
              + " | parameters | latency ms/sample |")
    lines = [config, "", header, "|" + "---|" * (5 + len(names))]
    for row in rows:
        cells = [row["method"], row["dice"], row["iou"], *[row[f"dice_{n}"] for n in names],
                 f"{row['parameters']:,}", f"{row['latency_ms']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"parent/child parameter ratio: {rows[0]['parameters'] / child_params:.1f}x; "
                  f"latency ratio: {rows[0]['latency_ms'] / rows[1]['latency_ms']:.1f}x"]
    write_results(out, "\n".join(lines), {"config": config, "rows": rows})
    return 0


def _scores(values: list[dict[str, float]]) -> dict[str, object]:
    keys = [k for k in values[0] if k.startswith("dice") or k == "iou"]
    out: dict[str, object] = {k: mean_std([v[k] for v in values], digits=2, scale=100) for k in keys}
    out["raw"] = values
    return out


if __name__ == "__main__":
    sys.exit(main_exit_code(main))
