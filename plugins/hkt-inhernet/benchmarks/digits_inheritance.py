"""Inherited children against children trained from scratch at the same size, on sklearn digits.

    .venv/bin/python plugins/hkt-inhernet/benchmarks/digits_inheritance.py                # train, write both
    .venv/bin/python plugins/hkt-inhernet/benchmarks/digits_inheritance.py --report-only  # doc from the JSON
    .venv/bin/python plugins/hkt-inhernet/benchmarks/digits_inheritance.py --check        # exit 1 if stale
    .venv/bin/python plugins/hkt-inhernet/benchmarks/digits_inheritance.py --quick        # smoke check, temp folder

Trains a small CNN parent (30 epochs), compresses it to 50% and 25% of its parameters, and
reports test accuracy of the inherited child before and after 5 epochs of fine-tuning, next to a
narrower CNN of about the same size trained from scratch for 5 and 20 epochs, and the parent
trained 5 more epochs (the control for the extra fine-tuning). One seed; about a minute on a CPU.

The numbers go to ``docs/results/inhernet.json``; the section of ``docs/inhernet.md`` between
its markers is generated from that file by :func:`render` (nothing in it is typed by hand).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "inhernet.md"
RESULTS_FILE = ROOT / "docs" / "results" / "inhernet.json"
BEGIN, END = "<!-- inhernet-measurement:begin -->", "<!-- inhernet-measurement:end -->"
COMMAND = ".venv/bin/python plugins/hkt-inhernet/benchmarks/digits_inheritance.py"

SEED = 0
TRAIN_SIZE = 1400
BATCH = 64
PARENT_WIDTH = 32
PARENT_EPOCHS = 30
EXTRA_EPOCHS = 5  # the parent's control for the children's fine-tuning
FINE_TUNE_EPOCHS = 5
SCRATCH_EPOCHS = (5, 20)
BUDGETS = (0.5, 0.25)
LR = 3e-3  # from random initialisation
FINE_TUNE_LR = 1e-3  # the inherited children and the parent's extra epochs


def measure(quick: bool = False) -> dict[str, Any]:
    """Trains every network of the comparison and returns the results file's content (``quick``:
    one or two epochs on 200 images, a smoke check whose figures mean nothing)."""
    parent_epochs, extra_epochs, fine_tune_epochs, scratch_epochs, train_size = (
        (1, 1, 1, (1, 2), 200) if quick else (PARENT_EPOCHS, EXTRA_EPOCHS, FINE_TUNE_EPOCHS, SCRATCH_EPOCHS, TRAIN_SIZE))
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from torch import nn

    from hkt_inhernet import CompressionPolicy, compress_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from inhernet_models import SmallCNN  # the CNN the plugin's tests compress

    def cnn(width: int) -> SmallCNN:
        return SmallCNN(num_classes=10, width=width)

    started = time.perf_counter()
    torch.set_num_threads(1)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None].repeat(1, 3, 1, 1) / 16
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    train_idx, test_idx = order[:train_size], order[train_size:]

    def accuracy(model: nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            return (model(x[test_idx]).argmax(1) == y[test_idx]).float().mean().item()

    def fit(model: nn.Module, epochs: int, lr: float = LR) -> nn.Module:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(SEED)
        for _ in range(epochs):
            model.train()
            shuffled = train_idx[torch.randperm(len(train_idx), generator=gen)]
            for i in range(0, len(shuffled), BATCH):
                batch = shuffled[i:i + BATCH]
                optimizer.zero_grad()
                F.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
        return model

    def count(model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    rows: list[dict[str, Any]] = []

    def row(network: str, budget: float | None, width: int | None, params: int, epochs: int, acc: float) -> None:
        rows.append({"network": network, "budget": budget, "width": width, "parameters": params,
                     "epochs": epochs, "seed": SEED, "test_accuracy": acc})

    torch.manual_seed(SEED)
    parent = fit(cnn(PARENT_WIDTH), parent_epochs)
    parent_acc = accuracy(parent)
    extra_acc = accuracy(fit(copy.deepcopy(parent), extra_epochs, lr=FINE_TUNE_LR))
    row("parent", None, PARENT_WIDTH, count(parent), parent_epochs, parent_acc)
    row("parent", None, PARENT_WIDTH, count(parent), parent_epochs + extra_epochs, extra_acc)
    print(f"parent: {count(parent):,} parameters, accuracy {parent_acc:.3f}; "
          f"after {extra_epochs} more epochs {extra_acc:.3f}")
    for budget in BUDGETS:
        torch.manual_seed(SEED)
        child, report = compress_model(parent, CompressionPolicy(budget=budget))
        at_init = accuracy(child)
        tuned = accuracy(fit(child, fine_tune_epochs, lr=FINE_TUNE_LR))
        width = PARENT_WIDTH
        while count(cnn(width)) > report.params_after:
            width -= 1
        scratch = {}
        for epochs in scratch_epochs:
            torch.manual_seed(SEED)
            scratch[epochs] = accuracy(fit(cnn(width), epochs))
        row("inherited", budget, None, report.params_after, 0, at_init)
        row("inherited", budget, None, report.params_after, fine_tune_epochs, tuned)
        for epochs in scratch_epochs:
            row("scratch", budget, width, count(cnn(width)), epochs, scratch[epochs])
        print(f"budget {budget}: inherited {report.params_after:,} parameters, accuracy {at_init:.3f} "
              f"at init, {tuned:.3f} after {fine_tune_epochs} epochs | scratch width {width} "
              f"({count(cnn(width)):,}): "
              + ", ".join(f"{scratch[e]:.3f} after {e}{' epochs' if i == 0 else ''}"
                          for i, e in enumerate(scratch_epochs)))

    settings = {
        "dataset": "sklearn digits, 8x8 images repeated to 3 channels, scaled to [0, 1]",
        "train_size": len(train_idx), "test_size": len(test_idx), "batch": BATCH,
        "optimizer": "Adam", "lr": LR, "fine_tune_lr": FINE_TUNE_LR,
        "parent_width": PARENT_WIDTH, "parent_epochs": parent_epochs, "extra_epochs": extra_epochs,
        "fine_tune_epochs": fine_tune_epochs, "scratch_epochs": list(scratch_epochs), "budgets": list(BUDGETS),
        "seed": SEED, "threads": 1, "torch": torch.__version__,
        "epochs_meaning": "parent and scratch rows: epochs from random initialisation (the parent's last "
                       f"{extra_epochs} of {parent_epochs + extra_epochs} at fine_tune_lr); inherited rows: "
                       "fine-tuning epochs after compression, at fine_tune_lr",
    }
    return {"command": COMMAND, "settings": settings, "seconds": round(time.perf_counter() - started, 1),
            "rows": rows}


# -- the doc section -----------------------------------------------------------------------------

def find(data: dict[str, Any], network: str, epochs: int, budget: float | None = None) -> dict[str, Any]:
    matches = [r for r in data["rows"]
               if r["network"] == network and r["epochs"] == epochs and r["budget"] == budget]
    if len(matches) != 1:
        raise KeyError(f"{len(matches)} rows for network={network} epochs={epochs} budget={budget}")
    return matches[0]


def versus(a: float, b: float) -> str:
    """How ``a`` compares with ``b`` at the table's three decimals."""
    a, b = round(a, 3), round(b, 3)
    return "above" if a > b else "below" if a < b else "equal to"


def section(data: dict[str, Any]) -> str:
    s = data["settings"]

    def acc(r: dict[str, Any]) -> str:
        return f"{r['test_accuracy']:.3f}"

    parent = find(data, "parent", s["parent_epochs"])
    extra = find(data, "parent", s["parent_epochs"] + s["extra_epochs"])
    ft, (short, long) = s["fine_tune_epochs"], s["scratch_epochs"]
    def para(text: str) -> str:
        return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)

    lines = [
        para(f"`{data['command'].removeprefix('.venv/bin/python ')}` ({data['seconds']:.0f} s on one CPU thread "
        f"for the run recorded here): sklearn digits ({s['train_size']:,} train / {s['test_size']:,} test, "
        f"8x8 images as 3 channels), a small CNN parent of width {s['parent_width']} "
        f"({parent['parameters']:,} parameters) trained {s['parent_epochs']} epochs with {s['optimizer']} "
        f"(lr {s['lr']:g}; fine-tuning at {s['fine_tune_lr']:g}); seed {s['seed']}, torch {s['torch']}. "
        "The figures below are generated from `docs/results/inhernet.json`, which that command writes "
        "(`--report-only` re-renders this section from the file, `--check` tests it)."),
        "",
        "| network | parameters | test accuracy |",
        "|---|---|---|",
        f"| parent | {parent['parameters']:,} | {acc(parent)} ({acc(extra)} after {s['extra_epochs']} more epochs) |",
    ]
    sentences = []
    for budget in s["budgets"]:
        init, tuned = find(data, "inherited", 0, budget), find(data, "inherited", ft, budget)
        a, b = find(data, "scratch", short, budget), find(data, "scratch", long, budget)
        lines += [
            f"| inherited, budget {budget:g}, no fine-tuning | {init['parameters']:,} | {acc(init)} |",
            f"| inherited, budget {budget:g}, +{ft} epochs | {tuned['parameters']:,} | {acc(tuned)} |",
            f"| scratch width {a['width']}, {short} / {long} epochs | {a['parameters']:,} | {acc(a)} / {acc(b)} |",
        ]
        sentences.append(
            f"at budget {budget:g} ({tuned['parameters'] / parent['parameters']:.0%} of the parent's parameters) "
            f"the inherited child starts at {acc(init)}, {versus(init['test_accuracy'], parent['test_accuracy'])} "
            f"the parent's {acc(parent)}, and after {ft} epochs of fine-tuning is at {acc(tuned)}, "
            f"{versus(tuned['test_accuracy'], b['test_accuracy'])} the {acc(b)} of the scratch network "
            f"after {long} epochs")
    lines += [
        "",
        para(f"A single small run (one seed), not a benchmark: {'; '.join(sentences)}."),
    ]
    return "\n".join(lines) + "\n"


def render(doc_text: str, data: dict[str, Any]) -> str:
    """``doc_text`` with the part between the markers replaced by what ``data`` gives."""
    if BEGIN not in doc_text or END not in doc_text:
        raise ValueError(f"{DOC.name} has no {BEGIN} ... {END} markers")
    head, rest = doc_text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{section(data)}{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="train nothing; exit 1 if docs/inhernet.md is not what the JSON gives")
    mode.add_argument("--report-only", action="store_true",
                      help="train nothing; re-render docs/inhernet.md from the existing JSON")
    mode.add_argument("--quick", action="store_true",
                      help="smoke check: a few epochs, results and a rendered copy of the doc under --out only")
    parser.add_argument("--out", default=None, help="--quick: folder for the results and the doc (default: a temporary one)")
    args = parser.parse_args(argv)
    results_file, doc = RESULTS_FILE, DOC
    if args.quick:
        import tempfile

        out = Path(args.out or tempfile.mkdtemp(prefix="hkt-inhernet-quick-"))
        out.mkdir(parents=True, exist_ok=True)
        results_file, doc = out / RESULTS_FILE.name, out / DOC.name
        doc.write_text(DOC.read_text())
    if not (args.check or args.report_only):
        data = measure(quick=args.quick)
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(data, indent=1) + "\n")
    data = json.loads(results_file.read_text())
    text = doc.read_text()
    new = render(text, data)
    if args.check:
        if new != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run {COMMAND} --report-only", file=sys.stderr)
            return 1
        return 0
    if new != text:
        doc.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
