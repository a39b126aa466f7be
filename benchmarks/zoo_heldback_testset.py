"""The alignment test set, trained: every pair of ``benchmarks/align_zoo.py``'s test set (families no
other pair, test or doc used; ground truth committed before their first run) goes through the Family
round of the held-back zoo pairs (:func:`zoo_heldback.family_round`): aligned at 3 stages, one
training step, and the exported child compared with the plain child.

    python benchmarks/zoo_heldback_testset.py [--quick] [--out docs/results/zoo_heldback_testset.json]

The models are the test set's own (built from their configuration classes at small widths, random
initialisation, nothing downloaded; transformers is needed). The labels are drawn per pair from the
child's class count. A pair the Family refuses because its training forward skips layers at random
(LayerDrop: no traced graph holds it) is recorded with that one-line refusal and run again with the fix
the refusal names (``layerdrop = 0.0``). A failing pair is a result: it is recorded with its error,
and the exit status is 1.
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


def _plain(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    out = model(*batch)
    return out.logits if hasattr(out, "logits") else out


def _without_layerdrop(*models: torch.nn.Module) -> None:
    """The fix the Family's refusal names for a training forward that skips layers at random: a
    transformers config's ``layerdrop = 0.0``."""
    for model in models:
        for module in model.modules():
            config = getattr(module, "config", None)
            if config is not None and getattr(config, "layerdrop", 0):
                config.layerdrop = 0.0


def run_pair(pair, manager) -> dict:
    """The Family round of ``pair`` as built; a pair refused because its training forward skips layers
    at random is recorded with the refusal and run again with the fix the refusal names."""
    row = _round(pair, manager, fix=False)
    if not row["ok"] and "layerdrop = 0.0" in row.get("error", ""):
        refused = row["error"]
        row = {**_round(pair, manager, fix=True), "as_built": refused, "with": "layerdrop = 0.0"}
    return row


def _round(pair, manager, fix: bool) -> dict:
    def run() -> dict:
        torch.manual_seed(0)
        parent, child, example = pair.build()
        if fix:
            _without_layerdrop(parent, child)
        example = tuple(example) if isinstance(example, (tuple, list)) else (example,)
        with torch.no_grad():
            classes = _plain(child.eval(), example).shape[-1]
        labels = torch.randint(0, classes, (example[0].shape[0],), generator=torch.Generator().manual_seed(0))
        return family_round(parent, child, example, example, labels, manager, _plain)

    return recorded({"pair": pair.name}, run, ("ok", "loss_finite", "export_equal", "child_gradients", "points"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first two pairs")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "zoo_heldback_testset.json")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("transformers") is None:
        print("transformers is not installed: nothing measured, nothing written", file=sys.stderr)
        return 0
    from align_zoo import _test_set

    from hkt_core.plugins.host import default_manager

    manager = default_manager()
    pairs = _test_set()[:2] if args.quick else _test_set()
    rows = []
    for pair in pairs:
        row = run_pair(pair, manager)
        rows.append(row)
        fixed = f" (with {row['with']}; as built: {row['as_built']})" if "with" in row else ""
        print(f"{row['pair']}: {'ok' if row['ok'] else 'FAILED ' + row.get('error', '')}{fixed} ({row['seconds']} s)",
              flush=True)
    import transformers

    result = {"command": "python benchmarks/zoo_heldback_testset.py" + (" --quick" if args.quick else ""),
              "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
              "ok": sum(r["ok"] for r in rows), "pairs": len(rows), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"{result['ok']}/{result['pairs']} ok; wrote {args.out}")
    return 0 if result["ok"] == result["pairs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
