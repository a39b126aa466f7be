"""Metrics as sum-reducible statistics, so they add up across batches and across processes.

A metric turns one batch into a vector of sums (``stats``); the value is computed from the summed
vector (``compute``). Accuracy is (correct, count); mean Dice is per-class (intersection, sizes).
This makes distributed reduction an ``all_reduce(SUM)`` of one tensor.
"""

from __future__ import annotations

import torch


class Metric:
    """Base class. ``name`` is the key in metrics.jsonl; ``higher_is_better`` its direction."""

    name: str = "metric"
    higher_is_better: bool = True

    def stats(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """A 1-D float64 tensor of sums for this batch."""
        raise NotImplementedError

    def compute(self, stats: torch.Tensor) -> float:
        raise NotImplementedError


class MetricAccumulator:
    """Sums ``stats`` of several metrics over batches; ``values()`` computes each metric."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = list(metrics)
        self.totals: list[torch.Tensor | None] = [None] * len(self.metrics)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        with torch.no_grad():
            for i, metric in enumerate(self.metrics):
                s = metric.stats(prediction, target).detach().to("cpu", torch.float64)
                self.totals[i] = s if self.totals[i] is None else self.totals[i] + s

    def reduce(self, reducer) -> None:
        """Combine with other processes: ``reducer(tensor) -> tensor`` sums across ranks."""
        self.totals = [None if t is None else reducer(t) for t in self.totals]

    def values(self) -> dict[str, float]:
        return {m.name: m.compute(t) for m, t in zip(self.metrics, self.totals) if t is not None}
