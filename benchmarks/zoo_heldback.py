"""What every held-back zoo pair goes through (``benchmarks/zoo_heldback_*.py``): aligned at 3
stages on example inputs, one Family training step on a batch, and the exported child compared with
the plain child on that batch."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def family_round(parent: nn.Module, child: nn.Module, example: tuple[torch.Tensor, ...],
                 batch: tuple[torch.Tensor, ...], labels: torch.Tensor, manager: Any,
                 plain: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor],
                 into: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pair's points, its training step (loss, whether every child parameter got a gradient)
    and whether ``plain(exported child, batch)`` equals ``plain(child, batch)``; ``ok`` when the
    loss is finite and the two are equal. Written into ``into`` as they are found (the points stay
    there when a later step raises) and returned."""
    from hkt_core.align import align
    from hkt_core.family import Family

    out = {} if into is None else into
    alignment = align(parent, child, example, stages=3, manager=manager)
    out["points"] = [[b.parent, b.child] for b in alignment.pairs]
    family = Family(parent, child, alignment, manager=manager)
    family.train()
    loss = family.loss(family(*batch), labels)
    loss.backward()
    grads = all(p.grad is not None for p in child.parameters() if p.requires_grad)
    family.eval()
    with torch.no_grad():
        equal = torch.equal(plain(family.export_child().eval(), batch), plain(child.eval(), batch))
    finite = bool(torch.isfinite(loss))
    out.update(ok=finite and equal, loss=float(loss.detach()), loss_finite=finite, child_gradients=grads,
               export_equal=equal)
    return out


def recorded(row: dict[str, Any], run: Callable[[], dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """``row`` with ``keys`` of what ``run()`` (a pair's :func:`family_round`) returned, or ``ok``
    false and the error (a failing pair is a result), and the seconds it took."""
    started = time.time()
    try:
        done = run()
        row.update({k: done[k] for k in keys})
    except Exception as exc:  # recorded: a failing pair is a result
        row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
    row["seconds"] = round(time.time() - started, 2)
    return row
