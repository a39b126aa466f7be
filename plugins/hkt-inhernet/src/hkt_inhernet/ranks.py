"""Choosing ranks from singular values: by energy, or by sharing out a parameter budget.

Energy is the fraction of the squared singular values a rank keeps, ``sum_{i<=r} s_i^2 /
sum_i s_i^2``: by Eckart-Young, ``1 - energy`` is the relative squared Frobenius error of the
rank-``r`` weight. A budget is shared out greedily: every compressed layer starts at rank 1, then
the next singular direction with the most *relative* energy per parameter it costs is added, while
it fits. Relative energy makes layers of different scales comparable; since singular values are
sorted, each layer's gains only shrink, so the greedy order is the fractional-knapsack optimum
up to the last direction that no longer fits.
"""

from __future__ import annotations

import heapq

import attrs
import torch

from hkt_core import ConfigError

from .layer import inherited_parameter_count


def kept_energy(singular: torch.Tensor, rank: int) -> float:
    """The fraction of ``sum s_i^2`` held by the first ``rank`` singular values (1.0 for a zero weight)."""
    squares = singular.to(torch.float64) ** 2
    total = float(squares.sum())
    if total == 0.0:
        return 1.0
    return float(squares[:rank].sum()) / total


def rank_for_energy(singular: torch.Tensor, energy: float) -> int:
    """The smallest rank ``r >= 1`` with ``kept_energy(singular, r) >= energy``."""
    squares = singular.to(torch.float64) ** 2
    total = float(squares.sum())
    if total == 0.0:
        return 1
    cumulative = torch.cumsum(squares, 0) / total
    # rounding can leave the full sum a hair below 1.0: never ask for more than full rank
    reached = torch.nonzero(cumulative >= energy - 1e-12)
    return int(reached[0]) + 1 if len(reached) else len(singular)


@attrs.frozen
class BudgetLayer:
    """One layer as the budget allocation sees it."""

    name: str
    singular: torch.Tensor
    d_in: int
    d_out: int
    max_rank: int
    bias: bool


def allocate_budget(layers: list[BudgetLayer], fixed: int, target: int, heads: int) -> dict[str, int]:
    """Ranks for ``layers`` so that ``fixed`` + their inherited parameters is at most ``target``.

    ``fixed`` counts every parameter that stays as it is (other layers, normalisation, ...).
    Raises :class:`ConfigError` when even rank 1 everywhere does not fit, naming the smallest
    reachable total.
    """
    ranks = {layer.name: 1 for layer in layers}
    used = fixed + sum(inherited_parameter_count(layer.d_in, layer.d_out, 1, heads, layer.bias) for layer in layers)
    if used > target:
        raise ConfigError(f"a budget of {target:,} parameters cannot be met: compressing every "
                          f"eligible layer to rank 1 still leaves {used:,}; raise the budget, "
                          "use fewer heads, or compress more layers")
    heap: list[tuple[float, int, int]] = []
    for index, layer in enumerate(layers):
        _push(heap, layer, index, 1, heads)
    while heap:
        _, index, _ = heapq.heappop(heap)
        layer = layers[index]
        cost = layer.d_in + heads * layer.d_out + heads  # one more rank: a row of down, a column of every head, a gate column
        if used + cost > target:
            continue  # this layer cannot grow any more; cheaper ones still may
        used += cost
        ranks[layer.name] += 1
        _push(heap, layer, index, ranks[layer.name], heads)
    return ranks


def _push(heap: list, layer: BudgetLayer, index: int, rank: int, heads: int) -> None:
    if rank >= layer.max_rank:
        return
    squares = layer.singular.to(torch.float64) ** 2
    total = float(squares.sum())
    gain = float(squares[rank]) / total if total > 0 else 0.0
    cost = layer.d_in + heads * layer.d_out + heads
    heapq.heappush(heap, (-gain / cost, index, rank))
