"""Inherited children against children trained from scratch at the same size, on sklearn digits.

    .venv/bin/python plugins/hkt-inhernet/benchmarks/digits_inheritance.py

Trains a small CNN parent (30 epochs), compresses it to 50% and 25% of its parameters, and
reports test accuracy of the inherited child before and after 5 epochs of fine-tuning, next to a
narrower CNN of about the same size trained from scratch for 5 and 20 epochs, and the parent
trained 5 more epochs (the control for the extra fine-tuning). One seed; about a minute on a CPU.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from hkt_inhernet import CompressionPolicy, compress_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from inhernet_models import SmallCNN  # the CNN the plugin's tests compress


def cnn(width: int) -> SmallCNN:
    return SmallCNN(num_classes=10, width=width)


def main() -> None:
    torch.set_num_threads(1)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None].repeat(1, 3, 1, 1) / 16
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = order[:1400], order[1400:]

    def accuracy(model: nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            return (model(x[test_idx]).argmax(1) == y[test_idx]).float().mean().item()

    def fit(model: nn.Module, epochs: int, lr: float = 3e-3) -> nn.Module:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            model.train()
            shuffled = train_idx[torch.randperm(len(train_idx), generator=gen)]
            for i in range(0, len(shuffled), 64):
                batch = shuffled[i:i + 64]
                optimizer.zero_grad()
                F.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
        return model

    def count(model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    torch.manual_seed(0)
    parent = fit(cnn(32), 30)
    print(f"parent: {count(parent):,} parameters, accuracy {accuracy(parent):.3f}; "
          f"after 5 more epochs {accuracy(fit(copy.deepcopy(parent), 5, lr=1e-3)):.3f}")
    for budget in (0.5, 0.25):
        torch.manual_seed(0)
        child, report = compress_model(parent, CompressionPolicy(budget=budget))
        at_init = accuracy(child)
        tuned = accuracy(fit(child, 5, lr=1e-3))
        width = 32
        while count(cnn(width)) > report.params_after:
            width -= 1
        torch.manual_seed(0)
        scratch5 = accuracy(fit(cnn(width), 5))
        torch.manual_seed(0)
        scratch20 = accuracy(fit(cnn(width), 20))
        print(f"budget {budget}: inherited {report.params_after:,} parameters, accuracy {at_init:.3f} "
              f"at init, {tuned:.3f} after 5 epochs | scratch width {width} ({count(cnn(width)):,}): "
              f"{scratch5:.3f} after 5 epochs, {scratch20:.3f} after 20")


if __name__ == "__main__":
    main()
