"""Optical-flow benchmark: RAFT-S baseline, KD on the parent's flow, 2HKT and 3HKT children.

The paper's pair (RAFT 5.3M -> RAFT-S 1.0M, trained for days on FlyingChairs/Things) cannot train
on a CPU, so the training runs use the ``flow-demo`` pair: the same two architectures at a quarter
of the widths, on the synthetic flow set (64x64 crops, 4 update iterations). The parent
(``raft_demo_parent``) is trained once; every child run loads its weights. 3HKT mixes at the
feature and context encoders (the card's alignment) and scores the final flow; 2HKT mixes at the
feature encoder only. Each (method, seed) is an ordinary run folder, reused when finished, so the
benchmark can be stopped and started again.

Measured: EPE (and 1/3-px accuracy) on the synthetic test split (photos never seen in training)
and on scikit-image's ``stereo_motorcycle`` (a real stereo pair, disparity as horizontal flow,
reduced 6x so its motions fall in the trained range), parameters, inference time per pair
(batch 1) for the demo pair and for the paper-size RAFT / RAFT-S (untrained weights: timing
only), and the parent/child time ratio (the paper reports 6x on its GPU).

    python benchmarks/flow.py               # full: 2 seeds, the card's epochs (~30 min on 2 idle cores)
    python benchmarks/flow.py --reduced     # fewer pairs, epochs and seeds, labelled as such
    python benchmarks/flow.py --quick       # smoke check in seconds, into a temporary folder

This is a demo of the methods on the ``flow-demo`` pair. Whether the quality benchmark's protocol
(a parent trained on plentiful data, a child on scarce data, KD as the positive control, 20 seeds of
every row) fits flow on 2 CPU cores was measured by
``python benchmarks/quality_sizing.py --pair flow-scarce-raftdemo`` (docs/RESULTS.md, Optical flow).
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
MOTORCYCLE_DOWNSCALE = 6


def evaluate(model: torch.nn.Module, dataset, task) -> dict[str, float]:
    """The task's metrics of ``model`` over ``dataset`` (pixels pooled over the set)."""
    from hkt_flow.adapter import RAFTAdapter

    adapter = RAFTAdapter()
    return metric_values(model, torch.utils.data.DataLoader(dataset, batch_size=16), task.metrics(),
                         lambda m, frames: adapter.prediction(m(*frames)))


def time_per_pair(model: torch.nn.Module, shape: tuple[int, int], repeats: int) -> float:
    """Median milliseconds of one forward pass on one pair (batch 1), after one warm-up pass."""
    gen = torch.Generator().manual_seed(0)
    image1 = torch.rand(1, 3, *shape, generator=gen) * 255
    image2 = torch.roll(image1, 2, dims=-1)
    model.eval()
    times = []
    with torch.inference_mode():
        model(image1, image2)
        for _ in range(repeats):
            start = time.perf_counter()
            model(image1, image2)
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = demo_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "runs/bench-flow",
                            "96 training pairs, 1 child epoch, 2 parent epochs, one seed, paper models timed "
                            "at 184x248")
    parser.add_argument("--train-size", type=int, default=None, help="synthetic training pairs (default: the card's)")
    parser.add_argument("--paper-shape", type=int, nargs=2, default=None,
                        help="frame size for timing the paper-size models (default 368 496, RAFT's chairs crop)")
    args = parse_demo_arguments(parser, argv, seeds=[0, 1], reduced={
        "train_size": 96, "epochs": 1, "parent_epochs": 2, "seeds": [0], "paper_shape": [184, 248]},
        quick={"train_size": 20, "test_size": 4, "epochs": 1, "parent_epochs": 1, "seeds": [0],
               "paper_shape": [64, 64]})
    paper_shape = tuple(args.paper_shape or (368, 496))

    manager = default_manager()
    card = demo_card(manager, "flow-demo", dataset_options={"train_size": args.train_size,
                                                            "test_size": getattr(args, "test_size", None)},
                     parent_epochs=args.parent_epochs)
    data_options, parent_train = dict(card.dataset_options), card.parent_train
    epochs = args.epochs or card.train.epochs
    out = Path(args.out)
    task = manager.lookup("tasks", card.task)
    bundle = manager.lookup("datasets", card.dataset)(**data_options)
    motorcycle = manager.lookup("datasets", "flow-motorcycle")(downscale=MOTORCYCLE_DOWNSCALE).test
    frame = tuple(card.input_shapes[0][2:])
    started = time.perf_counter()

    run = runner(out, manager)

    parent_epochs = parent_train.get("epochs", card.train.epochs)
    parent_run = run("parent", "parent", card, 0, epochs=parent_epochs)
    parent_file = parent_run.path / "child.safetensors"
    parent_model = parent_run.child()
    parent_ms = time_per_pair(parent_model, frame, repeats=10)
    rows = [{"method": f"parent ({card.parent})", "seeds": [0],
             "synthetic": [evaluate(parent_model, bundle.test, task)],
             "motorcycle": [evaluate(parent_model, motorcycle, task)],
             "parameters": count_parameters(parent_model), "ms": [parent_ms]}]
    for name, method, stages in VARIANTS:
        the_card = variant_card(card, stages, "fnet")
        row = {"method": f"{name} ({card.child})", "seeds": list(args.seeds), "synthetic": [], "motorcycle": [],
               "ms": []}
        for seed in args.seeds:
            extra = {"parent_weights": parent_file} if method != "baseline" else {}
            r = run(name, method, the_card, seed, epochs=epochs, **extra)
            child = r.child()
            row["synthetic"].append(evaluate(child, bundle.test, task))
            row["motorcycle"].append(evaluate(child, motorcycle, task))
            row["ms"].append(time_per_pair(child, frame, repeats=10))
            row["parameters"] = count_parameters(child)
        rows.append(row)
    training_minutes = (time.perf_counter() - started) / 60

    paper = {}
    for ref in ("raft", "raft_small"):
        model = build_model(ref, manager, iters=12)
        paper[ref] = {"parameters": count_parameters(model),
                      "ms": time_per_pair(model, paper_shape, repeats=3)}

    mc_shape = tuple(motorcycle[0][0][0].shape[1:])
    config = (f"pair flow-demo (raft_demo_parent -> raft_demo_child, 4 iterations), synthetic "
              f"{frame[0]}x{frame[1]} pairs, max motion {data_options.get('max_motion')} px, "
              f"{data_options.get('train_size')} train / {data_options.get('test_size')} test pairs (unseen photos); "
              f"parent {parent_epochs} epochs, children {epochs} epochs, seeds {args.seeds}; "
              f"stereo_motorcycle reduced {MOTORCYCLE_DOWNSCALE}x to {mc_shape[0]}x{mc_shape[1]}; "
              f"{'REDUCED configuration; ' if args.reduced else ''}"
              f"training wall time {training_minutes:.1f} min, torch threads {torch.get_num_threads()}")
    header = ("| method | synthetic EPE px | synthetic 1px % | synthetic 3px % | motorcycle EPE px | "
              "motorcycle 3px % | parameters | ms / pair |")
    lines = [config, "", header, "|" + "---|" * 8]
    for row in rows:
        cells = [row["method"],
                 mean_std([v["epe"] for v in row["synthetic"]]), mean_std([v["1px"] for v in row["synthetic"]], 1),
                 mean_std([v["3px"] for v in row["synthetic"]], 1), mean_std([v["epe"] for v in row["motorcycle"]]),
                 mean_std([v["3px"] for v in row["motorcycle"]], 1), f"{row['parameters']:,}",
                 f"{statistics.fmean(row['ms']):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    demo_ratio = rows[0]["ms"][0] / statistics.fmean(rows[1]["ms"])
    paper_ratio = paper["raft"]["ms"] / paper["raft_small"]["ms"]
    lines += ["",
              f"demo pair: parent/child parameters {rows[0]['parameters'] / rows[1]['parameters']:.1f}x, "
              f"time per pair {demo_ratio:.1f}x ({frame[0]}x{frame[1]}, 4 iterations)",
              f"paper sizes (untrained, timing only, {paper_shape[0]}x{paper_shape[1]}, 12 iterations, batch 1): "
              f"raft {paper['raft']['parameters']:,} parameters {paper['raft']['ms']:.0f} ms, raft_small "
              f"{paper['raft_small']['parameters']:,} parameters {paper['raft_small']['ms']:.0f} ms: "
              f"{paper_ratio:.1f}x (the paper: 6x on a TITAN RTX)"]
    write_results(out, "\n".join(lines), {"config": config, "rows": rows, "paper": paper, "paper_shape": paper_shape})
    return 0


if __name__ == "__main__":
    sys.exit(main_exit_code(main))
