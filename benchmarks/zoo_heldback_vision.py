"""Held-back torchvision and timm pairs (never used before in this project, listed before the
first run): each builds a Family at 3 stages, trains a step and exports a child equal to the plain
child. Needs torchvision and timm (a separate venv: they pull another torch); without them it says
so and writes nothing.

    python benchmarks/zoo_heldback_vision.py [--quick] [--out docs/results/zoo_heldback_vision.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo_heldback import family_round, recorded

ROOT = Path(__file__).resolve().parents[1]
#: (source, parent, child): written down before the first run
PAIRS = [("torchvision", "regnet_y_400mf", "mobilenet_v3_small"), ("torchvision", "densenet121", "shufflenet_v2_x0_5"),
         ("torchvision", "wide_resnet50_2", "resnet18"), ("timm", "efficientnet_b0", "mobilenetv3_small_100"),
         ("timm", "resnet26d", "resnet10t")]
#: ``--quick``: one pair per library
QUICK = [PAIRS[1], PAIRS[4]]


def run_pair(source: str, parent_name: str, child_name: str, manager) -> dict:
    from hkt_zoo.vision_sources import timm_model, torchvision_model

    make = torchvision_model if source == "torchvision" else timm_model
    row: dict = {"source": source, "parent": parent_name, "child": child_name}

    def run() -> dict:
        torch.manual_seed(0)
        parent, child = make(name=parent_name, num_classes=10), make(name=child_name, num_classes=10)
        x = torch.randn(2, 3, 32, 32)
        return family_round(parent, child, x, (x,), torch.tensor([0, 4]), manager, lambda model, batch: model(*batch))

    return recorded(row, run, ("ok", "loss_finite", "export_equal", "points"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one pair per library")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "zoo_heldback_vision.json")
    args = parser.parse_args(argv)
    missing = [m for m in ("torchvision", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"{' and '.join(missing)} not installed: nothing measured, nothing written "
              f"(pip install 'hkt-zoo[torchvision,timm]' in a separate venv)", file=sys.stderr)
        return 0
    import timm
    import torchvision

    from hkt_core.plugins import default_manager

    manager = default_manager()
    rows = []
    for pair in (QUICK if args.quick else PAIRS):
        rows.append(run_pair(*pair, manager))
        r = rows[-1]
        print(f"{r['source']} {r['parent']} -> {r['child']}: {'ok' if r['ok'] else 'FAIL'} "
              f"{r.get('points', r.get('error'))} ({r['seconds']} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                                                 "timm": timm.__version__, "python": platform.python_version()},
                                    "quick": args.quick, "pairs": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
